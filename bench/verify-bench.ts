/**
 * `npm run bench -- --only verify`: the figure of `signet verify` on a large release.
 *
 * A release of --artifacts N files (default 1,000) totalling --release-mib M (default
 * 1,024, i.e. 1 GiB) of random bytes is built, its manifest made by
 * `signet manifest create`, signed by a running service through `signet sign` (raw),
 * and its trust bundle saved from GET /v1/trust: every step the built CLI, as a CI job
 * and a deployment gate run it. Then, in one run, `sha256sum` over the same files and
 * `signet verify` of the release are timed in turn, alternating for --rounds rounds
 * (default 3) after one untimed pass of each that fills the page cache; the best round
 * of each is compared, so neither pays for a cold cache or for a moment when the
 * machine was busy with something else.
 *
 * The target: `signet verify` is bound by hashing speed, within 1.5x of `sha256sum`.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createAgent, expectOk, requestJson } from '../cli/https-client.js';

const here = dirname(fileURLToPath(import.meta.url));
const CLI = join(here, '..', 'cli', 'main.js');

export interface VerifyBenchOptions {
  readonly artifacts: number;
  readonly releaseMiB: number;
  readonly rounds: number;
  readonly keep: boolean;
  /** A free port for the service. */
  readonly port: number;
  readonly log: (message: string) => void;
}

export interface VerifyBenchResult {
  readonly artifacts: number;
  readonly releaseBytes: number;
  readonly rounds: number;
  readonly sha256sumSeconds: readonly number[];
  readonly verifySeconds: readonly number[];
  readonly bestSha256sumSeconds: number;
  readonly bestVerifySeconds: number;
  /** best verify ÷ best sha256sum (target ≤ 1.5). */
  readonly ratio: number;
}

function cli(args: readonly string[], env: NodeJS.ProcessEnv = process.env): string {
  return execFileSync(process.execPath, [CLI, ...args], { env, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
}

/** Seconds one run of `command` takes; throws unless it exits 0. */
function timed(command: string, args: readonly string[]): number {
  const started = process.hrtime.bigint();
  const result = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (result.status !== 0) throw new Error(`${command} exited ${String(result.status)}: ${result.stderr.trim().split('\n')[0] ?? ''}`);
  return seconds;
}

async function startService(config: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [CLI, 'serve', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const collect = (data: Buffer): void => { output += data.toString(); };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { clearInterval(check); reject(new Error(`the service did not start:\n${output}`)); }, 30_000);
    const check = setInterval(() => {
      if (output.includes('signet listening')) {
        clearInterval(check);
        clearTimeout(timer);
        resolve();
      }
    }, 25);
    child.once('exit', (code) => {
      clearInterval(check);
      clearTimeout(timer);
      reject(new Error(`the service exited with ${String(code)}:\n${output}`));
    });
  });
  return child;
}

export async function runVerifyBench(options: VerifyBenchOptions): Promise<VerifyBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), 'signet-verify-bench-'));
  let service: ChildProcess | undefined;
  try {
    options.log(`verify 1/4 signet init in ${dir}…`);
    const init = JSON.parse(cli(['init', '--dir', join(dir, 'signet'), '--port', String(options.port), '--json'])) as { config: string; url: string; caCert: string };
    service = await startService(init.config);

    const total = options.releaseMiB * 1024 * 1024;
    const size = Math.floor(total / options.artifacts);
    options.log(`verify 2/4 writing ${options.artifacts} artifacts, ${options.releaseMiB} MiB in all…`);
    const dist = join(dir, 'release', 'dist');
    mkdirSync(dist, { recursive: true });
    // One random block reused with a per-file prefix: files differ, writing stays fast.
    const block = randomBytes(size);
    for (let i = 0; i < options.artifacts; i += 1) {
      const bytes = i === options.artifacts - 1 ? randomBytes(total - size * (options.artifacts - 1)) : block;
      const name = `artifact-${String(i).padStart(5, '0')}.bin`;
      writeFileSync(join(dist, name), Buffer.concat([Buffer.from(`${name}\n`), bytes.subarray(name.length + 1)]));
    }

    options.log('verify 3/4 manifest, signature and trust bundle…');
    const manifest = join(dir, 'release', 'manifest.intoto.json');
    // The source the dev token names: the policy `signet init` writes binds the two.
    const commit = randomBytes(20).toString('hex');
    cli(['manifest', 'create', '--dir', dist, '--version', '1.0.0', '--build-command', 'make release', '--source-repository', 'https://github.com/example/demo', '--commit', commit, '--out', manifest]);
    const signetDir = join(dir, 'signet');
    const token = cli(['dev-token', '--dir', signetDir, '--claim', `sha=${commit}`]).trim();
    const signature = `${manifest}.sig`;
    cli(['sign', '--dir', signetDir, '--payload', manifest, '--format', 'raw', '--out', signature], { ...process.env, SIGNET_ID_TOKEN: token });
    const trustBundle = join(dir, 'trust.json');
    const trust = await requestJson(createAgent({ caFile: init.caCert }), `${init.url}/v1/trust`);
    writeFileSync(trustBundle, JSON.stringify(expectOk(trust, 'GET /v1/trust')));
    service.kill('SIGTERM');
    service = undefined;

    const files = readdirSync(dist).sort().map((name) => join(dist, name));
    const verifyArgs = [CLI, 'verify', '--manifest', manifest, '--signature', signature, '--dir', dist, '--trust-bundle', trustBundle];
    options.log(`verify 4/4 sha256sum and signet verify, alternating, ${options.rounds} rounds after a warm-up pass…`);
    timed('sha256sum', files);
    timed(process.execPath, verifyArgs);
    const sums: number[] = [];
    const verifies: number[] = [];
    for (let round = 0; round < options.rounds; round += 1) {
      // A B, B A, …: neither always goes first.
      if (round % 2 === 0) {
        sums.push(timed('sha256sum', files));
        verifies.push(timed(process.execPath, verifyArgs));
      } else {
        verifies.push(timed(process.execPath, verifyArgs));
        sums.push(timed('sha256sum', files));
      }
      options.log(`  round ${round + 1}: sha256sum ${(sums.at(-1) ?? 0).toFixed(2)} s, signet verify ${(verifies.at(-1) ?? 0).toFixed(2)} s`);
    }
    const bestSha256sumSeconds = Math.min(...sums);
    const bestVerifySeconds = Math.min(...verifies);
    return {
      artifacts: options.artifacts,
      releaseBytes: total,
      rounds: options.rounds,
      sha256sumSeconds: sums,
      verifySeconds: verifies,
      bestSha256sumSeconds,
      bestVerifySeconds,
      ratio: bestVerifySeconds / bestSha256sumSeconds,
    };
  } finally {
    service?.kill('SIGTERM');
    if (!options.keep) rmSync(dir, { recursive: true, force: true });
  }
}

export function formatVerifyBench(r: VerifyBenchResult): string {
  const mib = r.releaseBytes / 1024 / 1024;
  return [
    '',
    `signet verify, ${r.artifacts} artifacts, ${mib.toFixed(0)} MiB (best of ${r.rounds} alternating rounds, warm page cache)`,
    `  sha256sum       ${r.bestSha256sumSeconds.toFixed(2)} s   (${(mib / r.bestSha256sumSeconds).toFixed(0)} MiB/s; rounds ${r.sha256sumSeconds.map((s) => s.toFixed(2)).join(', ')})`,
    `  signet verify   ${r.bestVerifySeconds.toFixed(2)} s   (${(mib / r.bestVerifySeconds).toFixed(0)} MiB/s; rounds ${r.verifySeconds.map((s) => s.toFixed(2)).join(', ')})`,
    `  ratio           ${r.ratio.toFixed(2)}x   (target ≤ 1.5x)`,
    '',
  ].join('\n');
}
