// Run the real Pulumi CLI on a TypeScript program, serving the program from this process.
//
// pulumi-language-nodejs cannot be built here (its Go module is not served), so the CLI cannot
// start a Node.js program itself. @pulumi/pulumi's Automation API serves inline programs with
// its own language server; this script hosts that server on 127.0.0.1 around the project's
// compiled program (its default export, a function) and passes the CLI
// `--client=<addr> --exec-kind auto.inline`, only for commands that run the program, exactly as
// testbed/pulumi_program.py does for Python. Every argument reaches the real CLI unchanged.
//
//   node testbed/inline/pulumi_program.js <project dir> <compiled program> -- <pulumi args>
//
// The SDK is loaded from the project's own node_modules, so the program and the language
// server share one @pulumi/pulumi (its runtime state is per module instance).
"use strict";

const childProcess = require("child_process");
const path = require("path");
const { createRequire } = require("module");

const RUNS_PROGRAM = new Set(["up", "update", "preview", "pre"]);
const RUNS_PROGRAM_IF_ASKED = new Set(["destroy", "down", "refresh"]);

function runsProgram(args) {
    if (args.length === 0) return false;
    if (RUNS_PROGRAM.has(args[0])) return true;
    const asked = args.some((a) => a === "--run-program" || a === "--run-program=true");
    return RUNS_PROGRAM_IF_ASKED.has(args[0]) && asked;
}

async function serve(projectRequire, programPath) {
    const grpc = projectRequire("@grpc/grpc-js");
    const langrpc = projectRequire("@pulumi/pulumi/proto/language_grpc_pb");
    const { LanguageServer } = projectRequire("@pulumi/pulumi/automation/server");
    const { grpcChannelOptions } = projectRequire("@pulumi/pulumi/runtime");
    const exported = projectRequire(programPath);
    const program = typeof exported === "function" ? exported : exported.default;
    if (typeof program !== "function") {
        throw new Error(`${programPath} must export its program as a function (export = async () => {...})`);
    }
    const server = new grpc.Server({ ...grpcChannelOptions });
    const languageServer = new LanguageServer(program);
    server.addService(langrpc.LanguageRuntimeService, languageServer);
    const port = await new Promise((resolve, reject) =>
        server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    return { port, languageServer, server };
}

async function main() {
    const argv = process.argv.slice(2);
    const dash = argv.indexOf("--");
    if (dash !== 2) {
        console.error("usage: pulumi_program.js <project dir> <compiled program> -- <pulumi args>");
        process.exit(2);
    }
    const [projectDir, programFile] = argv.slice(0, 2).map((p) => path.resolve(p));
    const args = argv.slice(3);
    const pulumi = process.env.PULUMI_CLI || "pulumi";
    let served;
    if (runsProgram(args)) {
        served = await serve(createRequire(path.join(projectDir, "package.json")), programFile);
        args.push(`--client=127.0.0.1:${served.port}`, "--exec-kind", "auto.inline");
    }
    // Ctrl-C reaches the CLI too; it cancels cleanly and still needs our language server meanwhile.
    process.on("SIGINT", () => {});
    const child = childProcess.spawn(pulumi, args, {
        cwd: projectDir,
        stdio: "inherit",
        env: { ...process.env, PULUMI_DEBUG_COMMANDS: "true" },
    });
    const code = await new Promise((resolve) => child.on("exit", (c, signal) => resolve(c ?? (signal ? 1 : 0))));
    if (served) {
        served.languageServer.onPulumiExit(code !== 0);
        served.server.forceShutdown();
    }
    process.exit(code);
}

main().catch((err) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
});
