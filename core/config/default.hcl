# SoulPad's built-in default config, used when `soulpad` runs without
# --config. `soulpad config default` prints it; examples/site.hcl documents
# every key.

pad {
  # Where the pad is: the USB disk's mount point or any directory.
  path = "soulpad-pad"
}

machine {
  name       = "soul"
  memory_mib = 256
  vcpus      = 1
  cpu_model  = "portable"
}

plugins {
  crypt  = "crypt-gocryptfs"
  vmm    = "vmm-qemu"
  detect = "detect-linux"
}
