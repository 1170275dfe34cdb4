// Command codex-image builds the codex container images without a
// container engine (package ociimage): make images writes
// .tmp/images/codex-edge.tar and codex-controlplane.tar, which docker load
// and podman load accept.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/persiv/codex/deploy/deploytest/ociimage"
)

func main() {
	root := flag.String("root", ".", "the repository's root")
	out := flag.String("out", ".tmp/images", "directory for the image tarballs")
	version := flag.String("version", "dev", "the images' tag and VERSION build argument")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := ociimage.BuildAll(ctx, *root, *out, *version, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "codex-image: %v\n", err)
		os.Exit(1)
	}
}
