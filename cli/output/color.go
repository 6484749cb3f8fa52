package output

// palette holds the ANSI sequences of one printer; all empty when colour is
// off, so the formatting code appends them unconditionally.
type palette struct {
	host, port, identity, green, red, yellow, reset string
}

func newPalette(on bool) palette {
	if !on {
		return palette{}
	}
	return palette{
		host:     "\x1b[36m", // cyan
		port:     "\x1b[33m", // yellow
		identity: "\x1b[35m", // magenta
		green:    "\x1b[32m",
		red:      "\x1b[31m",
		yellow:   "\x1b[33m",
		reset:    "\x1b[0m",
	}
}
