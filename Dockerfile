# syntax=docker/dockerfile:1
#
# One image for every stevedore service; the Kubernetes manifests (infra/) pick the service with the
# container command:
#   node apps/fetcher/src/main.ts     node apps/hasher/src/main.ts
#   node apps/committer/src/main.ts   node apps/api/src/main.ts (the default)
#   node apps/cli/bin/stevedore.mjs   (the stevedore CLI)
# Node 24 runs the TypeScript sources directly (type stripping): there is no build step, so the
# final stage is the sources plus the production dependencies, installed with `npm ci` from the
# same package-lock.json that CI uses.
#
#   docker build -t stevedore:dev .

ARG NODE_IMAGE=node:24-slim

# --- manifests: only the package.json files, so the dependency layer below is rebuilt when a
# dependency changes, not when any source file does (COPY --from is cached by content).
FROM ${NODE_IMAGE} AS manifests
WORKDIR /src
COPY . .
RUN mkdir /manifests \
 && cp package.json package-lock.json .npmrc /manifests/ \
 && find apps libs tools tests -mindepth 2 -maxdepth 2 -name package.json -exec cp --parents {} /manifests/ \;

# --- deps: production dependencies only. npm ci fails if package-lock.json and the package.json
# files disagree, so the image gets exactly the versions CI tested. --ignore-scripts: no
# production dependency needs an install script (msgpackr's native extension is optional and
# falls back to JavaScript), and running none keeps the build reproducible.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY --from=manifests /manifests/ ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

# --- runtime: sources and production node_modules, owned by root and read-only to the service
# user, which runs with a read-only root filesystem in Kubernetes.
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
# Node's compile cache, on the pod's writable /tmp (an emptyDir in infra/): from the second start
# on, the TypeScript sources come out of it already stripped and the process never loads Node's
# TypeScript stripper (30 MiB of RSS per process, measured; libs/store limiter.ts does the same for
# its worker threads).
ENV NODE_COMPILE_CACHE=/tmp/node-compile-cache
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY libs ./libs
COPY apps ./apps
# The image's `node` user (uid/gid 1000), by number so that the kubelet can verify runAsNonRoot.
USER 1000:1000
# 8080: the api (STEVEDORE_API_PORT); 8081: the workers' /healthz and /readyz (STEVEDORE_HEALTH_PORT).
EXPOSE 8080 8081
CMD ["node", "apps/api/src/main.ts"]
