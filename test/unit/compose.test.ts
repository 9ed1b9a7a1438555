// docker-compose.yml and the Dockerfile, checked offline: `docker-compose config` (Debian's v1, or
// v2 standalone) and `docker compose config` (the plugin) parse and resolve the file without a
// Docker engine. Skips visibly when neither command is installed (.ci/run installs docker-compose).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

interface Tool {
  label: string;
  cmd: string;
  args: string[];
}

// The variables the compose file reads, removed so that a developer's shell cannot change the output.
const COMPOSE_VARS = ['PG2CRATE_PG_PORT', 'PG2CRATE_CRATE_PORT', 'CRATEDB_VERSION', 'COMPOSE_FILE', 'COMPOSE_PROJECT_NAME'];

function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of COMPOSE_VARS) delete env[k];
  return env;
}

function available(): Tool[] {
  const tools: Tool[] = [];
  const v1 = spawnSync('docker-compose', ['version'], { encoding: 'utf8', env: cleanEnv() });
  if (!v1.error && v1.status === 0) tools.push({ label: 'docker-compose', cmd: 'docker-compose', args: [] });
  const v2 = spawnSync('docker', ['compose', 'version'], { encoding: 'utf8', env: cleanEnv() });
  if (!v2.error && v2.status === 0) tools.push({ label: 'docker compose', cmd: 'docker', args: ['compose'] });
  return tools;
}

/** The lines of one service's block in the YAML that `config` prints (both versions indent by 2). */
function serviceBlock(yaml: string, name: string): string {
  const lines = yaml.split('\n');
  const servicesAt = lines.findIndex((l) => l === 'services:');
  assert.ok(servicesAt >= 0, `no top-level "services:" in:\n${yaml}`);
  const start = lines.findIndex((l, i) => i > servicesAt && l === `  ${name}:`);
  assert.ok(start >= 0, `service ${name} is missing from the resolved compose file:\n${yaml}`);
  const out: string[] = [];
  for (let i = start + 1; i < lines.length; i++) {
    const l = lines[i];
    if (l.trim() !== '' && !l.startsWith('   ')) break;
    out.push(l);
  }
  return out.join('\n');
}

const tools = available();

test('docker-compose.yml resolves offline to postgres, cratedb (explicit ports) and pg2crate started after both are healthy', async (t) => {
  if (tools.length === 0) {
    t.skip('neither docker-compose nor the docker compose plugin is installed (apt-get install docker-compose); compose file not validated');
    return;
  }
  for (const tool of tools) {
    await t.test(tool.label, () => {
      const res = spawnSync(tool.cmd, [...tool.args, '-f', 'docker-compose.yml', 'config'], { encoding: 'utf8', env: cleanEnv(), timeout: 60_000 });
      assert.equal(res.status, 0, `${tool.label} config failed:\n${res.stderr}`);
      const yaml = res.stdout;

      const pgBlock = serviceBlock(yaml, 'postgres');
      assert.match(pgBlock, /wal_level=logical/);
      assert.match(pgBlock, /pg_isready/);
      assert.match(pgBlock, /docker-entrypoint-initdb\.d/);

      const crate = serviceBlock(yaml, 'cratedb');
      // CrateDB's port settings are ranges by default: each one must be pinned.
      for (const setting of ['-Cdiscovery.type=single-node', '-Chttp.port=4200', '-Cpsql.port=5432', '-Ctransport.port=4300']) {
        assert.ok(crate.includes(setting), `cratedb command lacks ${setting}:\n${crate}`);
      }
      assert.match(crate, /image: crate:\d+\.\d+\.\d+/, 'the CrateDB image is pinned to a release');
      assert.match(crate, /4200/);
      assert.match(crate, /curl/);

      const app = serviceBlock(yaml, 'pg2crate');
      assert.match(app, /build:/);
      assert.match(app, /CRATEDB_URL: http:\/\/cratedb:4200/);
      assert.match(app, /DATABASE_URL: postgres:\/\/[^\n]*@postgres:5432\//);
      assert.match(app, /PG2CRATE_TABLES: public\.orders/);
      assert.match(app, /migrate && exec node dist\/cli\.js start/);
      const healthy = app.match(/condition: service_healthy/g) ?? [];
      assert.equal(healthy.length, 2, `pg2crate must wait for both databases to be healthy:\n${app}`);
    });
  }
});

test('the image ships migrations/ next to dist/, where the compiled migrate.js looks for them', () => {
  const dockerfile = readFileSync('Dockerfile', 'utf8');
  // dist/source/migrate.js resolves ../../migrations/ → /app/migrations.
  assert.match(dockerfile, /^COPY migrations \.\/migrations$/m);
  assert.match(dockerfile, /^COPY --from=build \/app\/dist \.\/dist$/m);
  assert.match(dockerfile, /^WORKDIR \/app$/m);
  assert.match(dockerfile, /^USER node$/m);
  assert.match(dockerfile, /^ENTRYPOINT \["node", "dist\/cli\.js"\]$/m);
  const ignored = readFileSync('.dockerignore', 'utf8').split('\n').map((l) => l.trim());
  for (const needed of ['src', 'migrations', 'bin', 'scripts', 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json']) {
    assert.ok(!ignored.includes(needed), `.dockerignore excludes ${needed}, which the build needs`);
  }
  const build = JSON.parse(readFileSync('tsconfig.build.json', 'utf8')) as { compilerOptions?: { rootDir?: string; outDir?: string } };
  assert.equal(build.compilerOptions?.rootDir, 'src', 'rootDir src keeps dist/source/migrate.js two levels below the package root');
  assert.equal(build.compilerOptions?.outDir, 'dist');
});
