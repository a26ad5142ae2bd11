# syntax=docker/dockerfile:1
#
# backfill as a container image: one static binary (pure Go, CGO_ENABLED=0)
# on distroless/static, which holds CA certificates (for TLS to tenant
# databases and files APIs), time zone data and a non-root user, and no
# shell or package manager. Build it with `make image`; README, "Running it
# as a service", says what it contains and how the deploy/ examples run it.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The build context has no .git (.dockerignore), so the toolchain cannot
# stamp the VCS facts itself (-buildvcs=false says so rather than guess):
# `make image` passes them as build arguments, linked into internal/version.
ARG VERSION=
ARG REVISION=
ARG REVISION_TIME=
ARG MODIFIED=
ENV CGO_ENABLED=0
RUN go build -trimpath -buildvcs=false \
      -ldflags "-s -w \
        -X backfill/internal/version.stampVersion=${VERSION} \
        -X backfill/internal/version.stampRevision=${REVISION} \
        -X backfill/internal/version.stampTime=${REVISION_TIME} \
        -X backfill/internal/version.stampModified=${MODIFIED}" \
      -o /out/backfill ./cmd/backfill \
 && /out/backfill version \
 && mkdir -p /out/evidence

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=
ARG REVISION=
LABEL org.opencontainers.image.title="backfill" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/backfill /backfill
# An empty /evidence owned by the non-root user: a volume mounted there
# starts from it, so it is writable. The root file system is not (run it
# read-only); the evidence store lives only on that volume.
COPY --from=build --chown=65532:65532 /out/evidence /evidence
USER 65532:65532
WORKDIR /evidence
ENV BACKFILL_EVIDENCE=/evidence/evidence.db
VOLUME ["/evidence"]
ENTRYPOINT ["/backfill"]
