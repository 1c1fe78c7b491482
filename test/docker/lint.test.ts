/**
 * The container and monitoring files, checked without a container engine:
 * scripts/lint-docker.sh (dockerfile-utils, dclint against the Compose specification,
 * promtool on the Prometheus config, the alert rules and their unit tests), then what
 * no linter knows about this project: the base image pinned by digest, a non-root
 * runtime user, SoftHSM in the dev target only, a health check that verifies TLS, the
 * compose start-up order, and a replica config that Signet's own schema accepts.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Copy, DockerfileParser, type Instruction } from 'dockerfile-ast';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { configSchema } from '../../config/schema.js';

const DIGEST = /@sha256:[0-9a-f]{64}$/;

describe('scripts/lint-docker.sh', () => {
  it('passes: Dockerfile, compose file, entrypoint, Prometheus config, alert rules and their tests', () => {
    const run = spawnSync('bash', ['scripts/lint-docker.sh'], { encoding: 'utf8', timeout: 240_000 });
    expect(`${run.stdout}${run.stderr}`).toContain('lint-docker: ok');
    expect(run.status).toBe(0);
  }, 300_000);
});

interface Stage {
  readonly name: string;
  readonly from: string;
  readonly instructions: readonly Instruction[];
}

function stagesOf(path: string): { stages: Stage[]; initialArgs: Map<string, string> } {
  const dockerfile = DockerfileParser.parse(readFileSync(path, 'utf8'));
  const initialArgs = new Map(
    dockerfile.getInitialARGs().flatMap((arg) => {
      const property = arg.getProperty();
      return property === null ? [] : [[property.getName(), property.getValue() ?? ''] as const];
    }),
  );
  const stages: { name: string; from: string; instructions: Instruction[] }[] = [];
  for (const instruction of dockerfile.getInstructions()) {
    if (instruction.getKeyword() === 'FROM') {
      const args = instruction.getArguments().map((a) => a.getValue());
      stages.push({ from: args[0] ?? '', name: args[2] ?? '', instructions: [] });
    } else {
      stages.at(-1)?.instructions.push(instruction);
    }
  }
  return { stages, initialArgs };
}

/** A stage's instructions with those of the stages it is built FROM. */
function lineage(stages: readonly Stage[], name: string): Instruction[] {
  const stage = stages.find((s) => s.name === name);
  if (stage === undefined) return [];
  return [...lineage(stages, stage.from), ...stage.instructions];
}

const text = (instructions: readonly Instruction[], keyword: string) =>
  instructions.filter((i) => i.getKeyword() === keyword).map((i) => i.getRawArgumentsContent() ?? '');

describe('docker/Dockerfile', () => {
  const { stages, initialArgs } = stagesOf('docker/Dockerfile');

  it('builds from one base image pinned by digest', () => {
    const base = initialArgs.get('NODE_IMAGE');
    expect(base).toMatch(/^docker\.io\/library\/node:20-bookworm-slim@sha256:[0-9a-f]{64}$/);
    for (const stage of stages) expect(['${NODE_IMAGE}', ...stages.map((s) => s.name)]).toContain(stage.from);
  });

  it('has build, runtime, dev and production stages; production is the default (last) target', () => {
    expect(stages.map((s) => s.name)).toEqual(['build', 'runtime', 'dev', 'production']);
    expect(stages.find((s) => s.name === 'dev')?.from).toBe('runtime');
    expect(stages.find((s) => s.name === 'production')?.from).toBe('runtime');
  });

  it('the build stage runs npm ci (through the README script) and npm run build, then drops dev dependencies', () => {
    const runs = text(lineage(stages, 'build'), 'RUN').join('\n');
    expect(runs).toContain('bash scripts/ensure-node-deps.sh');
    expect(runs).toContain('npm run build');
    expect(runs).toContain('npm prune --omit=dev');
    expect(readFileSync('scripts/ensure-node-deps.sh', 'utf8')).toContain('npm ci');
  });

  it('the runtime copies only dist, production node_modules, softhsm/ and the entrypoint from the build', () => {
    const copies = lineage(stages, 'production').filter((i): i is Copy => i instanceof Copy);
    expect(copies.map((c) => c.getFromFlag()?.getValue())).toEqual(copies.map(() => 'build'));
    const sources = copies.map((c) => c.getArguments()[0]?.getValue());
    expect(sources.sort()).toEqual(['/src/dist', '/src/docker/entrypoint.sh', '/src/node_modules', '/src/package.json', '/src/softhsm']);
  });

  it('runs as a non-root user in both targets', () => {
    for (const target of ['production', 'dev']) {
      const users = text(lineage(stages, target), 'USER');
      expect(users.at(-1)).toBe('signet:signet');
    }
  });

  it('installs SoftHSM in the dev target only', () => {
    const installs = (target: string) => text(lineage(stages, target), 'RUN').join('\n');
    expect(installs('dev')).toMatch(/apt-get install[^\n]*softhsm2/);
    expect(installs('production')).not.toMatch(/softhsm/i);
  });

  it('checks health with node over verified TLS, never curl or an insecure flag', () => {
    const [healthcheck] = text(lineage(stages, 'production'), 'HEALTHCHECK');
    expect(healthcheck).toContain('"node", "/opt/signet/dist/docker/healthcheck.js"');
    expect(healthcheck).not.toMatch(/curl|wget|-k\b|--insecure/);
    const source = readFileSync('docker/healthcheck.ts', 'utf8');
    expect(source).not.toMatch(/rejectUnauthorized|NODE_TLS_REJECT_UNAUTHORIZED/);
  });
});

interface ComposeService {
  image?: string;
  command?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test?: string[]; disable?: boolean };
  volumes?: string[];
  ports?: string[];
  profiles?: string[];
  environment?: Record<string, string>;
}

describe('docker/compose.yaml', () => {
  const compose = parseYaml(readFileSync('docker/compose.yaml', 'utf8'), { merge: true }) as { services: Record<string, ComposeService> };
  const services = compose.services;
  const replicas = ['signet-1', 'signet-2'];

  it('runs two Signet replicas on one PostgreSQL and one shared SoftHSM token volume, each with a health check', () => {
    for (const name of replicas) {
      const replica = services[name]!;
      expect(replica.image).toBe('signet:dev');
      expect(replica.command).toEqual(['serve']);
      expect(replica.volumes).toContain('signet-dev:/var/lib/signet');
      expect(replica.volumes).toContain('./signet.compose.yaml:/etc/signet/signet.yaml:ro');
      expect(replica.healthcheck?.test).toEqual(['CMD', 'node', '/opt/signet/dist/docker/healthcheck.js']);
      expect(replica.environment?.SIGNET_POSTGRES_URL).toMatch(/^postgres:\/\/signet:.*@postgres:5432\/signet$/);
      // Published on loopback only.
      expect(replica.ports?.every((p) => p.startsWith('127.0.0.1:'))).toBe(true);
    }
    expect(services.postgres?.healthcheck?.test?.[1]).toBe('pg_isready');
  });

  it('starts in order: PostgreSQL healthy, then the one-shot set-up, then the replicas', () => {
    expect(services['signet-init']?.command).toEqual(['dev-init']);
    expect(services['signet-init']?.depends_on).toEqual({ postgres: { condition: 'service_healthy' } });
    for (const name of replicas) {
      expect(services[name]?.depends_on).toEqual({
        postgres: { condition: 'service_healthy' },
        'signet-init': { condition: 'service_completed_successfully' },
      });
    }
  });

  it('pins every image it pulls by digest', () => {
    for (const [name, service] of Object.entries(services)) {
      if (service.image === 'signet:dev') continue;
      expect(service.image, name).toMatch(DIGEST);
    }
  });

  it("gives the replicas a config Signet's own schema accepts, on PostgreSQL, with no secret in it", () => {
    const parsed = configSchema.safeParse(parseYaml(readFileSync('docker/signet.compose.yaml', 'utf8')));
    expect(parsed.error?.issues ?? []).toEqual([]);
    expect(parsed.data?.storage).toMatchObject({ driver: 'postgres', postgres: { url: { env: 'SIGNET_POSTGRES_URL' } } });
    expect(parsed.data?.hsm.pin).toEqual({ file: '/var/lib/signet/dev/secrets/hsm-pin' });
  });
});
