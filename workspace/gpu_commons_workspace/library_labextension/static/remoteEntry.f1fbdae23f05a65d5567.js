// gpu-commons-library: a prebuilt JupyterLab 4 extension, written by hand (no build step).
//
// It adds the alliance's library to JupyterLab's launcher: one card that opens the catalogue
// page the server extension serves (<server>/gpu-commons/library, gpu_commons_workspace/library.py)
// in a new browser tab. The launcher's token comes from JupyterLab's own shared module, which
// JupyterLab hands to init(); the card's words come from the server in the student's language.
(function () {
  "use strict";

  var NAME = "gpu-commons-library";
  var COMMAND = "gpu-commons:open-library";
  // Three books on a shelf, in JupyterLab's icon colour (jp-icon3 follows the light and dark themes).
  var BOOKS_SVG =
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
    '<rect x="3" y="4" width="4" height="15" rx="0.5"/><rect x="8.5" y="6" width="4" height="13" rx="0.5"/>' +
    '<rect x="14" y="4.5" width="4" height="14.5" rx="0.5" transform="rotate(-12 16 12)"/>' +
    '<rect x="2" y="19.5" width="20" height="1.5"/></g></svg>';
  var shareScope = null;

  function sharedModule(name) {
    var versions = shareScope && shareScope[name];
    if (!versions) {
      return Promise.reject(new Error(NAME + ": JupyterLab shares no " + name));
    }
    var newest = Object.keys(versions).sort().pop();
    return Promise.resolve(versions[newest].get()).then(function (factory) {
      return factory();
    });
  }

  function makePlugin(launcherModule, ui) {
    var icon = new ui.LabIcon({ name: NAME + ":books", svgstr: BOOKS_SVG });
    return {
      id: NAME + ":plugin",
      description: "Opens the alliance's library of datasets and open models from the launcher",
      autoStart: true,
      requires: [launcherModule.ILauncher],
      activate: function (app, launcher) {
        var settings = app.serviceManager.serverSettings;
        var page = settings.baseUrl.replace(/\/?$/, "/") + "gpu-commons/library";
        var headers = settings.token ? { Authorization: "token " + settings.token } : {};
        window
          .fetch(page + "?format=json", { cache: "no-store", credentials: "same-origin", headers: headers })
          .then(function (response) {
            if (!response.ok) {
              throw new Error(page + " answered " + response.status);
            }
            return response.json();
          })
          .then(function (library) {
            var words = library.sentences;
            app.commands.addCommand(COMMAND, {
              label: words.launcher,
              caption: words.launcher_caption,
              icon: icon,
              execute: function () {
                window.open(page, "_blank");
              },
            });
            launcher.add({ command: COMMAND, category: words.launcher, rank: 0 });
          })
          .catch(function (error) {
            console.error(NAME + ": the library's launcher card is missing", error);
          });
      },
    };
  }

  var container = {
    get: function (module) {
      if (module !== "./extension") {
        return Promise.reject(new Error('Module "' + module + '" does not exist in container.'));
      }
      return Promise.all([sharedModule("@jupyterlab/launcher"), sharedModule("@jupyterlab/ui-components")]).then(function (
        modules
      ) {
        var plugin = makePlugin(modules[0], modules[1]);
        return function () {
          return { __esModule: true, default: plugin };
        };
      });
    },
    init: function (scope) {
      shareScope = scope;
      return Promise.resolve();
    },
  };

  window._JUPYTERLAB = window._JUPYTERLAB || {};
  window._JUPYTERLAB[NAME] = container;
})();
