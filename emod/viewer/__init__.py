"""emod-view internals: one preview receiver per viewer process, and the HTTP server that fans it out."""
