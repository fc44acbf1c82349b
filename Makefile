# flint: a containerd shim v2 in TypeScript. `make demo` and `make test` set
# up everything they need on a fresh Debian 12 machine.
PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib/flint
BINDIR ?= $(PREFIX)/bin

.PHONY: all setup build native proto test demo bench install uninstall clean

all: build

setup:
	@bash scripts/setup.sh

native: setup
	@test -f build/Release/flint.node || npx node-gyp rebuild

build: setup
	npx tsc -p tsconfig.json
	node scripts/bundle.mjs

proto:
	bash scripts/gen-proto.sh

test: build
	npx tap dist/test/*.test.js

demo: build
	bash scripts/demo.sh

bench: build
	node dist/bench/run.js

install: build
	install -d $(DESTDIR)$(LIBDIR)/dist $(DESTDIR)$(LIBDIR)/build/Release $(DESTDIR)$(BINDIR)
	cp -r package.json bin $(DESTDIR)$(LIBDIR)/
	cp -r dist/bundle $(DESTDIR)$(LIBDIR)/dist/
	cp build/Release/flint.node $(DESTDIR)$(LIBDIR)/build/Release/
	printf '#!/bin/sh\nexec %s "$$@"\n' '$(LIBDIR)/bin/containerd-shim-flint-v2' > $(DESTDIR)$(BINDIR)/containerd-shim-flint-v2
	chmod 755 $(DESTDIR)$(BINDIR)/containerd-shim-flint-v2
	ln -sf $(LIBDIR)/bin/flint-agent $(DESTDIR)$(BINDIR)/flint-agent
	@echo
	@echo "Installed to $(BINDIR). Register flint in /etc/containerd/config.toml:"
	@echo
	@echo '  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.flint]'
	@echo '    runtime_type = "io.containerd.flint.v2"'
	@echo '    # optional, a flint config file (see the README):'
	@echo '    # [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.flint.options]'
	@echo '    #   ConfigPath = "/etc/flint/config.json"'
	@echo
	@echo "and run containers with: ctr run --runtime io.containerd.flint.v2 IMAGE ID"

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/containerd-shim-flint-v2 $(DESTDIR)$(BINDIR)/flint-agent
	rm -rf $(DESTDIR)$(LIBDIR)

clean:
	rm -rf dist build
