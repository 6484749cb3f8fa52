// Package usage marks errors that are the user's command line, not the
// world: they exit with code 2 and a hint to read the command's help.
package usage

import "errors"

type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// Error marks err as a command-line mistake; nil stays nil.
func Error(err error) error {
	if err == nil {
		return nil
	}
	return usageError{err}
}

// Is reports whether err is a command-line mistake.
func Is(err error) bool {
	var u usageError
	return errors.As(err, &u)
}
