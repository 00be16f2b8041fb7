"""Reports: console tables now; files and HTML build on the same summary."""
