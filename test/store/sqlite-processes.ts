/**
 * Runs the SQLite store in other Node processes, for tests of what several processes
 * sharing one database file may and may not do together.
 *
 * The children run the current sources, not a build: the store's modules are
 * transpiled with the project's TypeScript into a temporary directory (following the
 * relative imports from sqlite-store.ts), with a symlink to node_modules so that the
 * native driver resolves as usual.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const ENTRY = join(ROOT, 'store', 'sqlite', 'sqlite-store.ts');

/** Transpiles sqlite-store.ts and everything it imports into `outDir`; returns the entry's .js path. */
export function transpileStore(outDir: string): string {
  const pending = [ENTRY];
  const done = new Set<string>();
  while (pending.length > 0) {
    const source = pending.pop()!;
    if (done.has(source)) continue;
    done.add(source);
    const { outputText } = ts.transpileModule(readFileSync(source, 'utf8'), {
      fileName: source,
      compilerOptions: {
        module: ts.ModuleKind.ESNext,
        target: ts.ScriptTarget.ES2022,
        verbatimModuleSyntax: true,
      },
    });
    const target = join(outDir, relative(ROOT, source)).replace(/\.ts$/, '.js');
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, outputText);
    // Relative imports left after transpiling (type-only ones are gone): `./x.js` → `./x.ts`.
    for (const match of outputText.matchAll(/(?:from|import)\s*'(\.{1,2}\/[^']+)\.js'/g)) {
      pending.push(resolve(dirname(source), `${match[1]!}.ts`));
    }
  }
  writeFileSync(join(outDir, 'package.json'), JSON.stringify({ type: 'module' }));
  symlinkSync(join(ROOT, 'node_modules'), join(outDir, 'node_modules'), 'dir');
  return join(outDir, relative(ROOT, ENTRY)).replace(/\.ts$/, '.js');
}

/**
 * A child's programme: open the store, say `ready`, wait for `go` on stdin, then run
 * `body` (an async function of `store` and `input`, as JavaScript source) and print its
 * JSON result on the last line.
 */
export function childScript(storeModule: string, body: string): string {
  return `
import { openSqliteStore } from ${JSON.stringify(storeModule)};
import { once } from 'node:events';
const { path, input } = JSON.parse(process.argv[2]);
const store = openSqliteStore({ path, busyTimeoutMs: 30000 });
process.stdout.write('ready\\n');
await once(process.stdin, 'data');
const run = ${body};
const result = await run(store, input);
await store.close();
process.stdout.write(JSON.stringify(result) + '\\n');
process.exit(0);
`;
}

export interface ChildRun<T> {
  /** Resolves once the child has opened the store and waits for `go`. */
  readonly ready: Promise<void>;
  go(): void;
  readonly result: Promise<T>;
}

/** Starts `node script` with the database path and the child's input; stdio is piped. */
export function startChild<T>(script: string, path: string, input: unknown, timeoutMs = 60_000): ChildRun<T> {
  const child = spawn(process.execPath, [script, JSON.stringify({ path, input })], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let markReady!: () => void;
  const ready = new Promise<void>((resolveReady) => {
    markReady = resolveReady;
  });
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    stdout += chunk;
    if (stdout.startsWith('ready\n')) markReady();
  });
  child.stderr.on('data', (chunk: string) => {
    stderr += chunk;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const result = new Promise<T>((resolveResult, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const last = stdout.trim().split('\n').at(-1) ?? '';
      if (code !== 0) {
        reject(new Error(`child exited with ${String(code)}: ${stderr || stdout}`));
        return;
      }
      resolveResult(JSON.parse(last) as T);
    });
  });
  // A child that dies before it is ready must not leave `ready` pending forever.
  void result.then(markReady, markReady);
  return {
    ready,
    go: () => {
      child.stdin.end('go\n');
    },
    result,
  };
}
