# Two images from one build: `docker build --target webhook` and `--target agent`.
# Both binaries are static (CGO off) and stripped, built exactly as `make build` builds them, and
# run as non-root on distroless/static, which has no shell and no package manager.
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN make build VERSION=${VERSION}

FROM gcr.io/distroless/static-debian12:nonroot AS agent
COPY --from=build /src/bin/sidelog-agent /sidelog-agent
USER 65532:65532
ENTRYPOINT ["/sidelog-agent"]

FROM gcr.io/distroless/static-debian12:nonroot AS webhook
COPY --from=build /src/bin/sidelog /sidelog
USER 65532:65532
ENTRYPOINT ["/sidelog", "webhook"]
