# Cascade: one image for `cascade region` (the default), `cascade agent` and `cascade hub`.
#
#   docker build -t cascade .
#   docker run -e CASCADE_REPO=https://git.example.com/fleet.git -e CASCADE_REGION=eu-west \
#     -e CASCADE_ENROLLMENT_TOKEN=... -v cascade-eu-west:/var/lib/cascade -p 8080:8080 cascade
#
# Configuration comes only from environment variables and mounted files; no secret is
# ever baked in. See deploy/README.md for every variable.
#
# Build arguments:
#   BASE        the Node 20 runtime image (default node:20-bookworm-slim)
#   BUILD_BASE  the image that installs dependencies; it needs apt-get (default: BASE)
#   DEPS        which stage provides /app/node_modules: `deps` (default, builds them here)
#               or `deps-prebuilt` (copies them from the build context named `prebuilt`,
#               made on a machine with the same Node and libc; see scripts/container-base-image.sh
#               and test/container/, which build this way where no registry or apt is reachable)
#   BUILD_TOOLS which stage provides the TypeScript compiler that makes dist/: `build-tools`
#               (default, installs the devDependencies here) or `build-tools-prebuilt` (copies
#               a node_modules folder holding `typescript` from the build context named
#               `prebuilt-build-tools`; test/container/ hands in this checkout's)
#
# Build with BuildKit (Docker's default since 23.0), buildx, podman or buildah: they build only the
# stages the target needs. Docker's legacy builder builds every stage and fails on `prebuilt`.

ARG BASE=node:20-bookworm-slim
ARG BUILD_BASE=${BASE}
ARG DEPS=deps
ARG BUILD_TOOLS=build-tools

# Production dependencies. better-sqlite3 compiles its native addon when no prebuilt
# binary can be downloaded, so the compilers stay in this stage only.
FROM ${BUILD_BASE} AS deps
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts skips the project's own `prepare` (it compiles src/, which is not here, with a
# devDependency: the build stage below does that); `npm rebuild` then runs the dependencies'
# install scripts, e.g. the one that builds better-sqlite3's addon.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm rebuild \
 && npm cache clean --force

# Production dependencies made elsewhere (`npm ci --omit=dev` or `npm prune --omit=dev`
# with the same Node version and libc as BASE), handed in with
# `--build-context prebuilt=DIR`, DIR holding the node_modules folder's contents.
FROM scratch AS deps-prebuilt
COPY --from=prebuilt . /app/node_modules/

FROM ${DEPS} AS dependencies

# The TypeScript compiler (a devDependency). Compiling runs no install script, so no compiler
# toolchain either.
FROM ${BUILD_BASE} AS build-tools
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

# The same made elsewhere, handed in with `--build-context prebuilt-build-tools=DIR`, DIR holding
# node_modules contents with `typescript` among them.
FROM scratch AS build-tools-prebuilt
COPY --from=prebuilt-build-tools . /app/node_modules/

FROM ${BUILD_TOOLS} AS tools

# src/ compiled to dist/ (`npm run build`): bin/cascade.js runs it instead of the sources through
# tsx, which takes ~25 MB less memory per process and starts faster.
FROM ${BUILD_BASE} AS build
WORKDIR /app
COPY --from=tools /app/node_modules ./node_modules
COPY package.json tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY scripts/build-dist.mjs ./scripts/
COPY src ./src
RUN node scripts/build-dist.mjs

FROM ${BASE} AS runtime
# --max-semi-space-size=4: V8's young generation at most 2 x 4 MB instead of 2 x 16 MB. bin/cascade.js
# keeps a region's heap small (it holds a long poll per device), pinning the young generation at
# 2 x 1 MB unless it is sized here; 4 MB gives about the same peak (~135 MB with 2,500 devices) for
# half the GC work.
ENV NODE_ENV=production \
    NODE_OPTIONS=--max-semi-space-size=4 \
    CASCADE_DATA=/var/lib/cascade \
    CASCADE_LISTEN=0.0.0.0:8080 \
    CASCADE_LOG_FORMAT=json
WORKDIR /app
# A fixed, unprivileged uid (Kubernetes runAsNonRoot needs a numeric USER) that owns only
# the state directory; the application files stay root's and read-only.
RUN echo 'cascade:x:10001:10001:Cascade:/var/lib/cascade:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'cascade:x:10001:' >> /etc/group \
 && mkdir -p /var/lib/cascade \
 && chown 10001:10001 /var/lib/cascade \
 && chmod 0750 /var/lib/cascade
COPY --from=dependencies /app/node_modules ./node_modules
COPY package.json package-lock.json ./
COPY bin ./bin
COPY schemas ./schemas
COPY fleet-repo-template ./fleet-repo-template
COPY src ./src
# Compiled from the same src/ as above: bin/cascade.js checks that, and runs dist/.
COPY --from=build /app/dist ./dist
USER 10001:10001
VOLUME ["/var/lib/cascade"]
EXPOSE 8080
# Probes /healthz of `region` (on CASCADE_LISTEN) and `hub` (on CASCADE_HUB_LISTEN) with node,
# as slim images have no curl; other commands (`agent`) serve no HTTP and count as healthy while they run.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "const c=require('fs').readFileSync('/proc/1/cmdline','utf8').split('\\0')[2];if(c!=='region'&&c!=='hub')process.exit(0);const l=(c==='hub'?process.env.CASCADE_HUB_LISTEN||'0.0.0.0:8090':process.env.CASCADE_LISTEN||'0.0.0.0:8080'),i=l.lastIndexOf(':');let h=l.slice(0,i).replace(/^\\[|\\]$/g,'');if(!h||h==='0.0.0.0'||h==='::')h='127.0.0.1';fetch('http://'+(h.includes(':')?'['+h+']':h)+':'+l.slice(i+1)+'/healthz',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "/app/bin/cascade.js"]
CMD ["region"]
