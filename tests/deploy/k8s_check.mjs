// Helpers of tests/deploy/chart_test.sh, on rendered Kubernetes YAML (node, with the yaml package
// from scripts/helm-tools.sh's TOOLS_NODE_MODULES):
//
//   to-ts OUTDIR FILE...   one TypeScript file per YAML document, `const doc: Kind = {...}`
//                          typed with kubernetes-types (tests/deploy/types for the
//                          prometheus-operator kinds), plus OUTDIR/tsconfig.json for
//                          `tsc -p OUTDIR` (strict, excess-property checks on object literals)
//   toml OUTDIR FILE...    the ringlb.toml of every ConfigMap, as OUTDIR/<file>.toml
//   schema-keys SCHEMA README
//                          the chart's config keys (values.schema.json) against the keys the
//                          README's configuration reference documents, section by section
//   podman FILE            the rendered chart as `podman kube play` (4.3) runs it on this
//                          machine, on stdout: every pod template gets hostNetwork: true and
//                          loses its containers' `ports` (see podmanPod below); nothing else
//                          changes
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const toolsModules = process.env.TOOLS_NODE_MODULES;
if (!toolsModules) {
    console.error("k8s_check: TOOLS_NODE_MODULES is not set (eval \"$(scripts/helm-tools.sh)\")");
    process.exit(2);
}
const YAML = createRequire(path.join(toolsModules, "noop.js"))("yaml");

// apiVersion/kind -> [module, type name]. A kind the chart renders that is not here fails the check.
const kinds = {
    "v1/ConfigMap": ["kubernetes-types/core/v1", "ConfigMap"],
    "v1/Service": ["kubernetes-types/core/v1", "Service"],
    "v1/Pod": ["kubernetes-types/core/v1", "Pod"],
    "v1/ServiceAccount": ["kubernetes-types/core/v1", "ServiceAccount"],
    "apps/v1/Deployment": ["kubernetes-types/apps/v1", "Deployment"],
    "apps/v1/DaemonSet": ["kubernetes-types/apps/v1", "DaemonSet"],
    "policy/v1/PodDisruptionBudget": ["kubernetes-types/policy/v1", "PodDisruptionBudget"],
    "networking.k8s.io/v1/NetworkPolicy": ["kubernetes-types/networking/v1", "NetworkPolicy"],
    "monitoring.coreos.com/v1/ServiceMonitor": ["@ringlb/monitoring-v1", "ServiceMonitor"],
    "monitoring.coreos.com/v1/PodMonitor": ["@ringlb/monitoring-v1", "PodMonitor"],
};

function documents(file) {
    // YAML 1.1, as Kubernetes and Helm read it (sigs.k8s.io/yaml): an unquoted yes/on is a boolean
    // there, so a label `enabled: yes` must fail here as it would fail in the API server.
    const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"), {
        uniqueKeys: true,
        version: "1.1",
    });
    const out = [];
    for (const doc of docs) {
        if (doc.errors.length) throw new Error(`${file}: ${doc.errors[0].message}`);
        const value = doc.toJS();
        if (value !== null && value !== undefined) out.push(value);
    }
    return out;
}

function toTs(outdir, files) {
    fs.mkdirSync(outdir, { recursive: true });
    let count = 0;
    const failures = [];
    for (const file of files) {
        const base = path.basename(file).replace(/\.ya?ml$/, "").replace(/[^A-Za-z0-9_-]/g, "_");
        documents(file).forEach((doc, i) => {
            const key = `${doc.apiVersion}/${doc.kind}`;
            const type = kinds[key];
            if (!type) {
                failures.push(`${file}: document ${i}: no type for ${key}`);
                return;
            }
            const name = `${base}-${i}-${doc.kind}`;
            const text =
                `// ${file}, document ${i}: ${key} ${doc.metadata?.name ?? ""}\n` +
                `import type { ${type[1]} } from "${type[0]}";\n` +
                `export const doc: ${type[1]} = ${JSON.stringify(doc, null, 2)};\n`;
            fs.writeFileSync(path.join(outdir, `${name}.ts`), text);
            ++count;
        });
    }
    const tsconfig = {
        compilerOptions: {
            strict: true,
            noEmit: true,
            target: "es2020",
            module: "es2020",
            moduleResolution: "node",
            types: [],
            skipLibCheck: false,
            baseUrl: ".",
            paths: {
                "kubernetes-types/*": [path.join(toolsModules, "kubernetes-types/*")],
                "@ringlb/monitoring-v1": [path.join(here, "types/monitoring-v1.ts")],
            },
        },
        include: ["*.ts"],
    };
    fs.writeFileSync(path.join(outdir, "tsconfig.json"), JSON.stringify(tsconfig, null, 2));
    if (failures.length) {
        console.error(failures.join("\n"));
        process.exit(1);
    }
    if (count === 0) {
        console.error("k8s_check: no documents");
        process.exit(1);
    }
    console.log(`${count} documents`);
}

function toml(outdir, files) {
    fs.mkdirSync(outdir, { recursive: true });
    let count = 0;
    for (const file of files) {
        const base = path.basename(file).replace(/\.ya?ml$/, "");
        for (const doc of documents(file)) {
            if (doc.kind !== "ConfigMap" || !doc.data || !("ringlb.toml" in doc.data)) continue;
            fs.writeFileSync(path.join(outdir, `${base}.toml`), doc.data["ringlb.toml"]);
            ++count;
        }
    }
    console.log(`${count} configurations`);
}

// "runtime" from "### `[runtime]`: ...", "listener" from "### `[[listener]]`: ...".
function schemaKeys(schemaFile, readmeFile) {
    const schema = JSON.parse(fs.readFileSync(schemaFile, "utf8"));
    const config = schema.properties.config.properties;
    const readme = fs.readFileSync(readmeFile, "utf8");
    const begin = readme.indexOf("\n## Configuration reference");
    const end = readme.indexOf("\n### Complete example");
    if (begin < 0 || end < 0) throw new Error("README: no configuration reference");
    const documented = {};
    let section = null;
    for (const line of readme.slice(begin, end).split("\n")) {
        const heading = line.match(/^### `\[\[?([a-z_]+)\]\]?`/);
        if (heading) {
            section = heading[1];
            documented[section] = new Set();
            continue;
        }
        const entry = line.match(/^\*\*([a-z_]+)\*\* /);
        if (entry && section) documented[section].add(entry[1]);
    }
    const problems = [];
    for (const [section, keys] of Object.entries(documented)) {
        const node = config[section];
        if (!node) {
            problems.push(`README section [${section}] has no counterpart under config in the schema`);
            continue;
        }
        const props = node.type === "array" ? node.items.properties : node.properties;
        for (const key of keys)
            if (!(key in props)) problems.push(`config.${section}.${key}: documented, not in values.schema.json`);
        for (const key of Object.keys(props))
            if (!keys.has(key)) problems.push(`config.${section}.${key}: in values.schema.json, not in the README`);
    }
    for (const section of Object.keys(config))
        if (!(section in documented)) problems.push(`config.${section}: not a README section`);
    const total = Object.values(documented).reduce((n, s) => n + s.size, 0);
    if (total < 38) problems.push(`only ${total} keys found in the README (the parser broke?)`);
    if (problems.length) {
        console.error(problems.join("\n"));
        process.exit(1);
    }
    console.log(`${total} keys in ${Object.keys(documented).length} sections agree`);
}

// podman kube play 4.3 publishes every containerPort on the host (hostPort = containerPort; podman
// PR #19823 made later versions publish only hostPorts), which it refuses with host networking
// ("PortMappings can only be used with Bridge or slirp4netns networking"). With host networking
// the ports are the host's anyway, so the port list (documentation in a pod spec, and the names
// the probes use) is dropped. Host networking because bridge networking adds NAT rules that skew
// measurements on the test machines.
function podmanPod(file) {
    const out = [];
    for (const doc of documents(file)) {
        const spec = doc.kind === "Pod" ? doc.spec : doc.spec?.template?.spec;
        if (spec) {
            spec.hostNetwork = true;
            for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? [])]) delete c.ports;
        }
        out.push(YAML.stringify(doc, { version: "1.1" }));
    }
    if (out.length === 0) {
        console.error(`k8s_check: ${file}: no documents`);
        process.exit(1);
    }
    process.stdout.write(out.map((d) => "---\n" + d).join(""));
}

const [command, ...args] = process.argv.slice(2);
if (command === "to-ts") toTs(args[0], args.slice(1));
else if (command === "toml") toml(args[0], args.slice(1));
else if (command === "schema-keys") schemaKeys(args[0], args[1]);
else if (command === "podman") podmanPod(args[0]);
else {
    console.error(
        "usage: k8s_check.mjs to-ts OUTDIR FILE... | toml OUTDIR FILE... | schema-keys SCHEMA README | podman FILE");
    process.exit(2);
}
