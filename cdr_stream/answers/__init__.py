"""What an answer body is: its formats, the rows it holds, and those rows put in ID order."""
