# pg2crate as a container: `docker compose up` (see docker-compose.yml) or
#   docker run --rm -e DATABASE_URL=… -e CRATEDB_URL=http://crate:4200 -e PG2CRATE_TABLES=public.orders pg2crate migrate
#
# Build stage: compile src/ to dist/ with the dev dependencies (TypeScript).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# scripts/build.js stamps dist/ with its sources (bin/source-stamp.js)
COPY bin ./bin
COPY scripts/build.js ./scripts/
RUN npm run build

# Runtime stage: production dependencies, the compiled code and the migrations, run as a non-root user.
# src/capture/migrate.ts finds the SQL files at ../../migrations/ from dist/capture/migrate.js, i.e.
# /app/migrations: keep migrations/ next to dist/.
FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY migrations ./migrations
COPY bin ./bin
# `node` (uid 1000) comes with the base image; the application files stay owned by root, read-only to it.
USER node
# cli.ts handles SIGTERM (graceful: finish the page in flight) and a second signal (forced).
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["start"]
