# herald's container image: a static herald on an empty base with the CA certificates,
# running as an unprivileged user, with /data for campaign folders and their stores.
#
#   docker build -t herald --build-arg VERSION=v1.2.3 .
#   docker run --rm -v "$PWD:/data" herald send campaign.yaml --yes
#
# BINARY_FROM=prebuilt takes herald and the certificates from the build context instead
# of compiling (files ./herald and ./ca-certificates.crt, folder ./data): .ci/container.sh
# uses it to build and run this image where no registry can be reached.
ARG GO_IMAGE=golang:1.26-bookworm
ARG BINARY_FROM=build

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
ARG COMMIT=""
ARG DATE=""
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT} -X main.date=${DATE}" \
      -o /out/herald ./cmd/herald \
 && mkdir -p /out/data \
 && cp /etc/ssl/certs/ca-certificates.crt /out/ca-certificates.crt

FROM scratch AS prebuilt
COPY herald ca-certificates.crt /out/
COPY data /out/data

FROM ${BINARY_FROM} AS binary

FROM scratch
COPY --from=binary /out/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=binary /out/herald /usr/local/bin/herald
COPY --from=binary --chown=65532:65532 /out/data /data
USER 65532:65532
WORKDIR /data
VOLUME /data
ENTRYPOINT ["/usr/local/bin/herald"]
CMD ["--help"]
