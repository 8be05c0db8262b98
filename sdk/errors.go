package sdk

import "errors"

// Sentinel errors. A plugin wraps one of these (fmt.Errorf("…: %w", sdk.ErrX))
// and the host sees errors.Is(err, sdk.ErrX) after the RPC. The message of
// the plugin's error travels too; the host adds the plugin's name.
var (
	// ErrWrongPassphrase: the passphrase or key file does not open the vault.
	ErrWrongPassphrase = errors.New("wrong passphrase or key file")
	// ErrIncompatibleHost: this host cannot do what was asked (missing CPU
	// features, no device-mapper, …); the message says what is missing.
	ErrIncompatibleHost = errors.New("incompatible host")
	// ErrNotFound: a vault, machine, file or snapshot does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: create was asked for something that exists.
	ErrAlreadyExists = errors.New("already exists")
	// ErrInvalidConfig: the plugin's config block is not valid.
	ErrInvalidConfig = errors.New("invalid config")
	// ErrInvalidArgument: a request field is missing or out of range.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrUnsupported: the plugin does not implement an optional operation.
	ErrUnsupported = errors.New("not supported by this plugin")
	// ErrCorrupt: data on the pad (a state file, a header) does not verify.
	ErrCorrupt = errors.New("corrupt or truncated data")
	// ErrLocked: the operation needs an unlocked vault.
	ErrLocked = errors.New("vault is locked")
	// ErrBusy: the resource is in use (a vault mounted elsewhere, a machine
	// already running).
	ErrBusy = errors.New("busy")
	// ErrNotRunning: the machine is not running.
	ErrNotRunning = errors.New("machine is not running")
	// ErrPluginExited: the plugin process died or cannot be reached. Only the
	// host side produces it.
	ErrPluginExited = errors.New("plugin exited or cannot be reached")
)

// Sentinels lists every sentinel with the stable reason string that carries
// it across the RPC. The order is the order in which a wrapped error is
// matched.
var Sentinels = []struct {
	Err    error
	Reason string
}{
	{ErrWrongPassphrase, "WRONG_PASSPHRASE"},
	{ErrIncompatibleHost, "INCOMPATIBLE_HOST"},
	{ErrNotFound, "NOT_FOUND"},
	{ErrAlreadyExists, "ALREADY_EXISTS"},
	{ErrInvalidConfig, "INVALID_CONFIG"},
	{ErrInvalidArgument, "INVALID_ARGUMENT"},
	{ErrUnsupported, "UNSUPPORTED"},
	{ErrCorrupt, "CORRUPT"},
	{ErrLocked, "LOCKED"},
	{ErrBusy, "BUSY"},
	{ErrNotRunning, "NOT_RUNNING"},
	{ErrPluginExited, "PLUGIN_EXITED"},
}
