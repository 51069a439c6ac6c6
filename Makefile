# agentkeys-infra — see README.md. Every target works offline.
SHELL := /bin/bash
STACK ?= test-2
FORMAT ?= text
GO ?= go

.PHONY: plan contract check-isolation test test-unit test-e2e lint fmt deps

## plan: offline plan of one stack under the mock engine (STACK=test-2 FORMAT=text|json)
plan:
	@$(GO) run ./infra/cmd/plan --stack $(STACK) $(if $(filter json,$(FORMAT)),--json,)

## contract: each service's runtime contract against what the stack's host spec writes (STACK=test-2; SOURCES=1 lists every variable with its source)
contract:
	@$(GO) run ./infra/cmd/contract --stack $(STACK) $(if $(SOURCES),--sources,)

## check-isolation: plan prod, test, base, test-2..test-20 and fail on any shared physical name
check-isolation:
	@$(GO) run ./infra/cmd/check-isolation --timing

## test: the full suite (unit, mock-engine, real-component tests); what CI runs
test: deps lint test-unit check-isolation test-e2e test-realhost test-engine

## deps: install what the real-component tests need (idempotent; apt-get needs root when something is missing)
deps:
	@for f in .ci/install.d/*.sh; do bash "$$f" || { echo "deps: $$f failed" >&2; exit 1; }; done

## test-unit: every package's tests but the real-component e2e and real-host packages
test-unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v -e '/e2e' -e '/realhost')

## lint: gofmt + go vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

include $(wildcard mk/*.mk)
