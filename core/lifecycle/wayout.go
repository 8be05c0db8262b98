package lifecycle

import "errors"

// WayOutKind names what a user can do about an error.
type WayOutKind int

// The ways out an error can carry.
const (
	// WayOutOtherPoint: resume an older point, or boot the latest disk;
	// WayOut.Point is kept.
	WayOutOtherPoint WayOutKind = iota + 1
	// WayOutSuspendFirst: a session runs the pad; suspend it first.
	WayOutSuspendFirst
	// WayOutInit: there is no pad yet; make one.
	WayOutInit
)

// WayOut is what a user can do about an error, as facts: the error's
// message says what happened, and a front end (the CLI) words the way out
// in its own commands.
type WayOut struct {
	Kind WayOutKind
	// Point is the point the way out is about (kept, resumable).
	Point string
}

type wayOutError struct {
	err error
	w   WayOut
}

func (e *wayOutError) Error() string { return e.err.Error() }
func (e *wayOutError) Unwrap() error { return e.err }

// withWayOut attaches w to err.
func withWayOut(err error, w WayOut) error { return &wayOutError{err: err, w: w} }

// WayOutOf returns the way out err carries, if any.
func WayOutOf(err error) (WayOut, bool) {
	var e *wayOutError
	if errors.As(err, &e) {
		return e.w, true
	}
	return WayOut{}, false
}
