"""The two report PDFs (HW2 and Lab 6), built with Typst from the outputs of the tools."""
