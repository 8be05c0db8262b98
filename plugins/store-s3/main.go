// Command store-s3 is SoulPad's store plugin for S3 object stores (AWS
// S3, Ceph RGW, MinIO, SeaweedFS, Garage): Internet Suspend/Resume keeps
// versions of the locked pad there, checked out by one PC at a time.
package main

import (
	"github.com/soulpad/soulpad/plugins/store-s3/s3"
	"github.com/soulpad/soulpad/sdk"
)

func main() { sdk.Serve(s3.New()) }
