// Package rpc holds what the kind packages share on the wire: error
// mapping and the Base service adapters.
package rpc

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/soulpad/soulpad/sdk"
)

const domain = "soulpad.dev"

var codeOf = map[error]codes.Code{
	sdk.ErrWrongPassphrase:  codes.PermissionDenied,
	sdk.ErrIncompatibleHost: codes.FailedPrecondition,
	sdk.ErrNotFound:         codes.NotFound,
	sdk.ErrAlreadyExists:    codes.AlreadyExists,
	sdk.ErrInvalidConfig:    codes.InvalidArgument,
	sdk.ErrInvalidArgument:  codes.InvalidArgument,
	sdk.ErrUnsupported:      codes.Unimplemented,
	sdk.ErrCorrupt:          codes.DataLoss,
	sdk.ErrLocked:           codes.FailedPrecondition,
	sdk.ErrBusy:             codes.Unavailable,
	sdk.ErrNotRunning:       codes.FailedPrecondition,
	sdk.ErrPluginExited:     codes.Unavailable,
}

// ToStatus turns a plugin's error into a gRPC status error that carries
// the sentinel it wraps (if any) as an ErrorInfo reason.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && !isSentinelWrapped(err) {
		// Already a status (e.g. a context error from gRPC): pass it on.
		return err
	}
	code := codes.Unknown
	reason := ""
	for _, s := range sdk.Sentinels {
		if errors.Is(err, s.Err) {
			code, reason = codeOf[s.Err], s.Reason
			break
		}
	}
	if reason == "" {
		switch {
		case errors.Is(err, context.Canceled):
			code = codes.Canceled
		case errors.Is(err, context.DeadlineExceeded):
			code = codes.DeadlineExceeded
		}
		return status.Error(code, err.Error())
	}
	st := status.New(code, err.Error())
	if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: domain}); derr == nil {
		st = d
	}
	return st.Err()
}

func isSentinelWrapped(err error) bool {
	for _, s := range sdk.Sentinels {
		if errors.Is(err, s.Err) {
			return true
		}
	}
	return false
}

// RemoteError is a plugin's error as seen on the host: the plugin's message,
// and the sentinel it wrapped for errors.Is.
type RemoteError struct {
	Msg      string
	Sentinel error
	Code     codes.Code
}

func (e *RemoteError) Error() string { return e.Msg }

// Unwrap returns the sentinel the plugin wrapped, if any.
func (e *RemoteError) Unwrap() error { return e.Sentinel }

// FromStatus turns an error from a gRPC call back into a Go error on the
// host side. A dead or unreachable plugin becomes sdk.ErrPluginExited.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == domain {
			for _, s := range sdk.Sentinels {
				if s.Reason == info.Reason {
					return &RemoteError{Msg: st.Message(), Sentinel: s.Err, Code: st.Code()}
				}
			}
		}
	}
	switch st.Code() {
	case codes.Unavailable:
		return &RemoteError{Msg: sdk.ErrPluginExited.Error() + ": " + st.Message(), Sentinel: sdk.ErrPluginExited, Code: st.Code()}
	case codes.Canceled:
		return &RemoteError{Msg: st.Message(), Sentinel: context.Canceled, Code: st.Code()}
	case codes.DeadlineExceeded:
		return &RemoteError{Msg: st.Message(), Sentinel: context.DeadlineExceeded, Code: st.Code()}
	}
	return &RemoteError{Msg: st.Message(), Code: st.Code()}
}
