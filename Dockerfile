# Berth's image: the static binary alone on an empty root filesystem, run as
# an unprivileged user (65532), with blobs and the SQLite database in /data.
#
#   docker build -t berth .
#   docker run -d -p 5000:5000 -v berth-data:/data berth
#
# The build stage needs golang:1.26; where no base image can be pulled,
# deploy/docker/Dockerfile.local makes the same runtime image from a binary
# built on the host. Keep the two runtime stages alike: a test compares them.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/berth ./cmd/berth
# The user the registry runs as, its group, and an empty /data for it to own:
# a new named volume takes the owner of the directory it is mounted on.
RUN mkdir -p /out/data && \
    echo 'berth:x:65532:65532:berth:/data:/sbin/nologin' > /out/passwd && \
    echo 'berth:x:65532:' > /out/group

FROM scratch AS runtime
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/passwd /etc/passwd
COPY --from=build /out/group /etc/group
COPY --from=build --chown=65532:65532 /out/data /data
COPY --from=build /out/berth /berth
USER 65532:65532
# SQLite spills large sorts to a temporary file; the image has no /tmp and
# usually runs with a read-only root, so they go beside the database.
ENV SQLITE_TMPDIR=/data
EXPOSE 5000
VOLUME /data
# The image holds no shell and no curl: berth asks itself, GET /readyz (503
# while draining or when metadata or storage do not answer). Kubernetes probes
# /healthz and /readyz from outside instead (deploy/kubernetes).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s CMD ["/berth", "health"]
ENTRYPOINT ["/berth"]
CMD ["serve", "--data", "/data", "--addr", ":5000"]
