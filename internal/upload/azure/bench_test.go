package azure

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"

	"github.com/kib-project/kib/internal/upload/emulatortest"
)

// BenchmarkUploadPageBlob uploads a sparse VHD (KIB_BENCH_VHD_GIB GiB,
// default 4) to Azurite twice: sparse (holes and zero ranges skipped) and
// dense (every byte sent, the baseline). The disk is laid out like a
// built image: 512 MiB of files from 1 MiB on, and 64 KiB of file system
// metadata every 128 MiB. bench/upload-azure.sh runs it and reports the
// ratio.
func BenchmarkUploadPageBlob(b *testing.B) {
	ep := emulatortest.Azurite(b)
	gib := int64(4)
	if v, err := strconv.ParseInt(os.Getenv("KIB_BENCH_VHD_GIB"), 10, 64); err == nil && v > 0 {
		gib = v
	}
	dir := b.TempDir()
	if d := os.Getenv("KIB_BENCH_DIR"); d != "" {
		dir = d
	}
	path := filepath.Join(dir, "bench.vhd")
	virt := gib << 30
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(path)
	if err := f.Truncate(virt); err != nil {
		b.Fatal(err)
	}
	chunk := randBytes(1 << 20)
	for off := int64(1 << 20); off < 513<<20 && off < virt; off += 1 << 20 {
		if _, err := f.WriteAt(chunk, off); err != nil {
			b.Fatal(err)
		}
	}
	for off := int64(0); off < virt; off += 128 << 20 {
		if _, err := f.WriteAt(chunk[:64<<10], off+1024); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := f.WriteAt(vhdFooter(virt), virt); err != nil {
		b.Fatal(err)
	}
	f.Close()
	size := virt + PageSize

	cred, err := service.NewSharedKeyCredential("devstoreaccount1", emulatortest.AzuriteKey)
	if err != nil {
		b.Fatal(err)
	}
	sc, err := service.NewClientWithSharedKeyCredential(ep+"/", cred, nil)
	if err != nil {
		b.Fatal(err)
	}
	cont := "kibbench" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if _, err := sc.CreateContainer(context.Background(), cont, nil); err != nil {
		b.Fatal(err)
	}
	defer sc.DeleteContainer(context.Background(), cont, nil)

	for _, mode := range []struct {
		name  string
		dense bool
	}{{"sparse", false}, {"dense", true}} {
		b.Run(mode.name, func(b *testing.B) {
			b.SetBytes(size)
			for i := range b.N {
				name := mode.name + strconv.Itoa(i) + ".vhd"
				pc, err := pageblob.NewClientWithSharedKeyCredential(ep+"/"+cont+"/"+name, cred, nil)
				if err != nil {
					b.Fatal(err)
				}
				st, err := UploadPageBlob(context.Background(), pbClient{pc}, path, PageBlobOptions{Dense: mode.dense})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(st.Sent)/(1<<20), "MiB-sent")
				b.ReportMetric(float64(st.Requests), "requests")
				_, _ = pc.Delete(context.Background(), nil)
			}
		})
	}
}
