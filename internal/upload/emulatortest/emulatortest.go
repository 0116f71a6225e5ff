// Package emulatortest finds the cloud storage emulators the .ci scripts
// start for tests (Azurite: .ci/azurite.sh; fake-gcs-server:
// .ci/fake-gcs.sh) and makes the small images the upload tests send. A test
// whose emulator is not running is skipped, or fails when CI=true.
package emulatortest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// AzuriteKey is the well-known shared key of Azurite's account
// AzuriteAccount.
const (
	AzuriteAccount = "devstoreaccount1"
	AzuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Azurite returns the blob endpoint of a running Azurite: $KIB_TEST_AZURITE
// or http://127.0.0.1:10000/devstoreaccount1.
func Azurite(t testing.TB) string {
	t.Helper()
	return endpoint(t, "KIB_TEST_AZURITE", "http://127.0.0.1:10000/"+AzuriteAccount, "Azurite", "azurite.sh")
}

// FakeGCS returns the JSON API endpoint of a running fake-gcs-server:
// $KIB_TEST_FAKE_GCS or http://127.0.0.1:4443/storage/v1/.
func FakeGCS(t testing.TB) string {
	t.Helper()
	return endpoint(t, "KIB_TEST_FAKE_GCS", "http://127.0.0.1:4443/storage/v1/", "fake-gcs-server", "fake-gcs.sh")
}

func endpoint(t testing.TB, env, def, what, script string) string {
	t.Helper()
	ep := os.Getenv(env)
	if ep == "" {
		ep = def
	}
	host := strings.TrimPrefix(strings.TrimPrefix(ep, "http://"), "https://")
	host, _, _ = strings.Cut(host, "/")
	c, err := net.DialTimeout("tcp", host, time.Second)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not running at %s ($%s; start it with .ci/%s): %v", what, ep, env, script, err)
		}
		t.Skipf("%s is not running at %s ($%s; start it with .ci/%s)", what, ep, env, script)
	}
	c.Close()
	return ep
}

// FixedVHD is a fixed VHD of 2 MiB with random data in its first 64 KiB
// (the rest is sparse) and a valid footer.
func FixedVHD() []byte {
	const size = 2 << 20
	b := make([]byte, size+512)
	for i := 4096; i < 64<<10; i++ {
		b[i] = byte(rand.IntN(256))
	}
	f := b[size:]
	copy(f[0:8], "conectix")
	binary.BigEndian.PutUint32(f[8:], 2)
	binary.BigEndian.PutUint32(f[12:], 0x00010000)
	binary.BigEndian.PutUint64(f[16:], ^uint64(0))
	copy(f[28:32], "kib ")
	binary.BigEndian.PutUint64(f[40:], size)
	binary.BigEndian.PutUint64(f[48:], size)
	binary.BigEndian.PutUint32(f[60:], 2)
	var sum uint32
	for _, c := range f {
		sum += uint32(c)
	}
	binary.BigEndian.PutUint32(f[64:], ^sum)
	return b
}

// GCETarball is a GCE image: a 1 MiB disk.raw, random in its first 4 KiB,
// in a gzip'd tar.
func GCETarball() []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	disk := make([]byte, 1<<20)
	for i := range 4096 {
		disk[i] = byte(rand.IntN(256))
	}
	_ = tw.WriteHeader(&tar.Header{Name: "disk.raw", Mode: 0o644, Size: int64(len(disk)), Format: tar.FormatGNU})
	_, _ = tw.Write(disk)
	_ = tw.Close()
	_ = zw.Close()
	return buf.Bytes()
}
