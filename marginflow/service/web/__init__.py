"""The web pages: HTML shells served by the service's own process (:mod:`.pages`), whose
scripts (``static/js``) read the same API every other client reads, under the same
permissions and query scope, and follow the live feed. Nothing here reads the store."""
