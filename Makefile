# kib's everyday commands. `make image` builds a Debian 12 tar image into
# ./out; `make test` runs the tests. Both install the host tools they need
# (Debian packages) when run as root on Debian 12.

GO ?= go
OUT ?= out
TYPE ?= tar

# What kib itself needs on the host: nothing but the kernel. Image tools come
# from the manifest's build root; resolving uses the host's apt if there is
# one, else apt in a root kib bootstraps, and the keyring ships with kib.
# `make image` checks for root, mount and PID namespaces and resolv.conf.

# Host tools the tests drive directly, by Debian package; postgresql backs the shared
# queue's tests (.ci/postgres.sh starts it); krb5-kdc, krb5-admin-server and
# apache2 serve the Koji login tests against a real KDC and a real httpd;
# docker-registry is the real registry of the container upload tests.
HOST_PACKAGES = mmdebstrap apt-utils xz-utils tar util-linux dpkg \
	dosfstools mtools qemu-utils fdisk e2fsprogs \
	grub-efi-amd64-bin grub-pc-bin grub2-common systemd-boot-efi \
	qemu-system-x86 ovmf \
	krb5-kdc krb5-admin-server apache2 postgresql \
	docker-registry

.PHONY: image test deps kib bench vet fuzz chaos staticcheck race

image: kib
	@[ "$$(id -u)" = 0 ] || { echo "make image: kib build needs root (mount namespaces, chroot)" >&2; exit 1; }
	@[ -e /proc/self/ns/mnt ] && [ -e /proc/self/ns/pid ] || { echo "make image: the kernel has no mount or PID namespaces" >&2; exit 1; }
	@[ -r /etc/resolv.conf ] || { echo "make image: no /etc/resolv.conf to reach the mirrors" >&2; exit 1; }
	./kib build --distro debian-12 --arch x86_64 $(TYPE) --output-dir $(OUT)

kib:
	$(GO) build -o kib ./cmd/kib

# TEST_SERVERS starts, once, the servers the tests talk to on loopback
# (PostgreSQL, Azurite, fake-gcs-server) and exports where they listen; a
# sub-make inherits the exports and starts nothing again.
TEST_SERVERS = export KIB_TEST_POSTGRES=$${KIB_TEST_POSTGRES:-$$(.ci/postgres.sh)}; \
	export KIB_TEST_AZURITE=$${KIB_TEST_AZURITE:-$$(.ci/azurite.sh)}; \
	export KIB_TEST_FAKE_GCS=$${KIB_TEST_FAKE_GCS:-$$(.ci/fake-gcs.sh)};

test: deps
	$(GO) vet ./...
	$(MAKE) staticcheck
	.ci/minio.sh  # MinIO, the real S3 server of the upload tests (go install, once)
	scripts/koji-krb5-test.sh
	scripts/koji-httpd-test.sh
	$(TEST_SERVERS) \
	$(MAKE) race && \
	$(GO) run scripts/gotest.go -timeout 40m ./...

# chaos runs the long form of the chaos suite (cmd/kib/chaos_test.go; make
# test runs a short one): 200 composes, 20 SIGKILLs, 50 hub outages of 1-30 s
# and 20 upload cuts on SQLite and PostgreSQL. KIB_CHAOS_SEED=N replays a run.
chaos: deps
	export KIB_TEST_POSTGRES=$${KIB_TEST_POSTGRES:-$$(.ci/postgres.sh)}; \
	KIB_CHAOS_COMPOSES=200 KIB_CHAOS_KILLS=20 KIB_CHAOS_OUTAGES=50 KIB_CHAOS_CUTS=20 \
	KIB_CHAOS_MAX_OUTAGE_SECONDS=30 KIB_CHAOS_DEADLINE_SECONDS=3600 \
	$(GO) test -count=1 -v -timeout 4h -run '^TestChaos$$' ./cmd/kib
# test-minimal-host builds one qcow2 manifest on this host and again with a
# static kib alone in an otherwise empty root (the pinned build root brings
# every tool), and checks both give the same sha256. Long: two cold builds.
.PHONY: test-minimal-host
test-minimal-host: deps
	KIB_TEST_MINIMAL_HOST=1 $(GO) test -count=1 -v -timeout 90m -run '^TestBuildOnMinimalHost$$' ./internal/engine

# staticcheck runs honnef.co/go/tools' staticcheck, installed through the Go
# module proxy at a pinned version when missing.
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK ?= $(shell $(GO) env GOPATH)/bin/staticcheck
staticcheck:
	@test -x $(STATICCHECK) || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(STATICCHECK) ./...

# race runs the fast packages' tests (no image builds, no VMs) under the race
# detector; the queue's PostgreSQL comes from KIB_TEST_POSTGRES as in test.
RACE_PKGS ?= ./internal/redact ./internal/resolve ./internal/koji/... ./internal/composer ./internal/kojiimport ./internal/blueprint ./internal/adler
race:
	$(TEST_SERVERS) $(GO) test -race $(RACE_PKGS)

# deps installs the missing host packages (as root), or says which are missing.
deps:
	@missing=$$(for p in $(HOST_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing host packages:" $$missing; \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
		else \
			echo "missing Debian packages (install as root): apt-get install" $$missing >&2; exit 1; \
		fi; \
	fi

# fuzz runs each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./internal/manifest -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME)
	$(GO) test ./internal/blueprint -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME)
	$(GO) test ./internal/distro -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME)
	$(GO) test ./internal/depsolve -run '^$$' -fuzz FuzzParseURIs -fuzztime $(FUZZTIME)
	$(GO) test ./internal/depsolve -run '^$$' -fuzz FuzzParseDeb822 -fuzztime $(FUZZTIME)
	$(GO) test ./internal/depsolve -run '^$$' -fuzz FuzzParseRepoFlag -fuzztime $(FUZZTIME)
	$(GO) test ./internal/debindex -run '^$$' -fuzz FuzzParsePackages -fuzztime $(FUZZTIME)
	$(GO) test ./internal/engine/stages -run '^$$' -fuzz FuzzReadArMembers -fuzztime $(FUZZTIME)
	$(GO) test ./internal/debindex -run '^$$' -fuzz FuzzParseRelease -fuzztime $(FUZZTIME)
	$(GO) test ./internal/debindex -run '^$$' -fuzz FuzzCompareVersions -fuzztime $(FUZZTIME)
	$(GO) test ./internal/composer -run '^$$' -fuzz FuzzComposeRequest -fuzztime $(FUZZTIME)
	$(GO) test ./internal/koji -run '^$$' -fuzz FuzzDecodeResponse -fuzztime $(FUZZTIME)
	$(GO) test ./internal/koji -run '^$$' -fuzz FuzzDecodeCall -fuzztime $(FUZZTIME)
	$(GO) test ./internal/kojid -run '^$$' -fuzz FuzzBuildArgs -fuzztime $(FUZZTIME)
	$(GO) test ./internal/reproduce -run '^$$' -fuzz FuzzCompareTar -fuzztime $(FUZZTIME)
	$(GO) test ./internal/reproduce -run '^$$' -fuzz FuzzReadGPT -fuzztime $(FUZZTIME)
	$(GO) test ./internal/kojid -run '^$$' -fuzz FuzzParseBuilderConf -fuzztime $(FUZZTIME)
	$(GO) test ./internal/kojid -run '^$$' -fuzz FuzzOSBuildArgs -fuzztime $(FUZZTIME)
	$(GO) test ./internal/kojid -run '^$$' -fuzz FuzzComposeStatus -fuzztime $(FUZZTIME)
	$(GO) test ./internal/upload/azure -run '^$$' -fuzz FuzzParseOptions -fuzztime $(FUZZTIME)
	$(GO) test ./internal/upload/gcp -run '^$$' -fuzz FuzzParseOptions -fuzztime $(FUZZTIME)
	$(GO) test ./internal/upload/gcp -run '^$$' -fuzz FuzzParseRange -fuzztime $(FUZZTIME)
	$(GO) test ./internal/engine/stages -run '^$$' -fuzz FuzzUnpackDeb -fuzztime $(FUZZTIME)
	$(GO) test ./internal/engine/stages -run '^$$' -fuzz FuzzGrowBlocker -fuzztime $(FUZZTIME)
	$(GO) test ./internal/koji -run '^$$' -fuzz FuzzDecodeJSON -fuzztime $(FUZZTIME)
	$(GO) test ./internal/upload/awss3 -run '^$$' -fuzz FuzzParseOptions -fuzztime $(FUZZTIME)
	$(GO) test ./internal/artifacts -run '^$$' -fuzz FuzzParseURL -fuzztime $(FUZZTIME)

bench: deps kib
	bench/tar.sh
	bench/qcow2.sh
	bench/koji-upload.sh
	bench/compose.sh
	bench/kojid.sh
	bench/upload.sh
	bench/reproduce.sh
	bench/kojid-osbuild.sh
	bench/upload-azure.sh

# cloud-emulators starts Azurite and fake-gcs-server on loopback for the azure
# and gcp upload tests (installed on first use: npm, go install) and prints
# the exports the tests read.
.PHONY: cloud-emulators
cloud-emulators:
	@echo export KIB_TEST_AZURITE=$$(.ci/azurite.sh) KIB_TEST_FAKE_GCS=$$(.ci/fake-gcs.sh)
