"""Where rows come from: the source contract, the billing feed web service and the SFTP files."""
