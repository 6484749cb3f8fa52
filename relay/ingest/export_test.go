package ingest

// Recycle is recycle, for tests.
var Recycle = recycle
