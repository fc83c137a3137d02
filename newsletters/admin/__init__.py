"""The administrators' subscriber pages: search, history, import, export, data
protection, and the welcome letter to newly enrolled subscribers."""
