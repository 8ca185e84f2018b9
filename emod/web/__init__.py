"""Static files of the ``emod-view --http`` web page (served from the package, no CDN)."""
