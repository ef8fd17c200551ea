// Runs the JupyterLab lease plugin (workspace/.../labextension/static/remoteEntry.*.js) in node
// with a fake JupyterLab: the lease JSON (argv[3]) is what its fetch gets; prints the
// notifications it asked JupyterLab to show, as JSON, then exits (the plugin polls forever).
"use strict";
const fs = require("fs");
const vm = require("vm");
const [plugin, leaseJson] = process.argv.slice(2);
const shown = [];
global.window = {
  fetch: () => Promise.resolve({ ok: true, json: () => Promise.resolve(JSON.parse(leaseJson)) }),
};
vm.runInThisContext(fs.readFileSync(plugin, "utf8"), { filename: plugin });
const app = {
  serviceManager: { serverSettings: { baseUrl: "/user/x/", token: "" } },
  commands: { execute: (command, args) => { shown.push({ command, message: args && args.message }); return Promise.resolve(); } },
};
window._JUPYTERLAB["gpu-commons-lease"].get("./extension").then((factory) => {
  factory().default.activate(app);
  setTimeout(() => { console.log(JSON.stringify(shown)); process.exit(0); }, 300);
});
