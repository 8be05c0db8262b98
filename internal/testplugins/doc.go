// Package testplugins holds small plugins that the core's tests build and
// run as real plugin processes: a VMM whose "machine" is a counter
// (vmm-counter), a detect plugin that reports a profile from its config
// (detect-static) and a backup plugin that copies the pad to a directory
// (backup-copy). They exercise the lifecycle, the plugin host and the
// conformance suites, with fault injection from config; they are not
// stand-ins for QEMU, real hardware detection or a backup server, which
// have plugins of their own.
package testplugins
