// gpu-commons-lease: a prebuilt JupyterLab 4 extension, written by hand.
//
// JupyterLab loads a prebuilt extension as a module-federation container registered under
// window._JUPYTERLAB[name] with get() and init(). This plugin imports nothing: it reaches
// JupyterLab only through commands ("apputils:notify", "docmanager:save-all"), so it needs
// no webpack build and works with every JupyterLab 4 release.
(function () {
  "use strict";

  var NAME = "gpu-commons-lease";
  // The sentences come with the lease from the server extension, in the student's language
  // (the one message catalogue, gpu_commons_i18n); only the time left and the clock time are
  // filled in here. These English ones are used only when the server sent none.
  var ENGLISH = {
    warning: "Your GPU time ends in {left} (at {at}); the workspace stops then. Save your work now.",
    not_renewed: "Your GPU time ends in {left} (at {at}) and cannot be renewed; the workspace stops then. Save your work now.",
    reclaimed: "Your GPU goes back at {at} to a school below its guaranteed share; save your work now.",
    idle: "Your GPU has not been used for a while and others are waiting: it is released at {at}. Save your work now; your files are kept.",
    save_all: "Save all",
    units: { minute: { one: "{n} minute", other: "{n} minutes" }, second: { one: "{n} second", other: "{n} seconds" } },
  };
  var sentences = ENGLISH;
  var language = "en";

  function fill(text, values) {
    return text.replace(/\{(\w+)\}/g, function (all, name) {
      return Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : all;
    });
  }

  function amount(unit, n) {
    var forms = sentences.units[unit];
    var category = new Intl.PluralRules(language).select(n);
    return fill(forms[category] || forms.other, { n: n });
  }

  function clock(endsAt) {
    return endsAt.toLocaleTimeString(language, { hour: "2-digit", minute: "2-digit" });
  }

  function say(seconds, endsAt, reason) {
    var minutes = Math.round(seconds / 60);
    var left = minutes >= 1 ? amount("minute", minutes) : amount("second", Math.max(1, Math.round(seconds)));
    var warning = fill(reason ? sentences.not_renewed : sentences.warning, { left: left, at: clock(endsAt) });
    // A renewal the quota service refused: its own sentence (in the same language) says why.
    return reason ? warning + " " + reason : warning;
  }

  function sayReclaimed(endsAt, kind) {
    // Short enough for a toast (about 140 characters); the lease's full reason is in the log.
    // kind (the server extension's early_end): "idle" when the GPU sat unused while others wait.
    return fill(kind === "idle" && sentences.idle ? sentences.idle : sentences.reclaimed, { at: clock(endsAt) });
  }

  var timers = [];

  function notify(app, message) {
    app.commands.execute("apputils:notify", {
      message: message,
      type: "warning",
      options: {
        autoClose: false,
        actions: [{ label: sentences.save_all, commandId: "docmanager:save-all" }],
        data: { source: NAME },
      },
    });
  }

  function schedule(app, lease) {
    timers.forEach(clearTimeout);
    timers = [];
    if (!lease.expires_at) {
      return; // a lease without an end: nothing to warn about
    }
    var skew = Date.parse(lease.now) - Date.now(); // the browser's clock may be off
    var end = Date.parse(lease.expires_at);
    var endsAt = new Date(end - skew);
    function left() {
      return (end - (Date.now() + skew)) / 1000;
    }
    // A reclaim has its own sentence; any other reason (a renewal refused) goes with each warning.
    var reason = lease.ends_early ? "" : lease.reason || "";
    function warn() {
      var seconds = left();
      if (seconds > 0) {
        notify(app, say(seconds, endsAt, reason));
      }
    }
    var warnings = (lease.warnings_seconds || []).slice().sort(function (a, b) { return b - a; });
    var now = left();
    if (lease.reason && lease.ends_early && now > 0) {
      // The lease now ends early (its GPU share goes back to another school): say why at once.
      notify(app, sayReclaimed(endsAt, lease.early_end));
    } else if (reason && now > 0) {
      warn(); // the service will not renew the lease: say so now, not only at the next warning
    } else if (warnings.some(function (w) { return w >= now; }) && now > 0) {
      warn(); // opened after a warning time already passed: give the latest warning due at once
    }
    warnings.forEach(function (w) {
      if (now > w) {
        timers.push(setTimeout(warn, (now - w) * 1000));
      }
    });
    var saveAt = Math.max(0, now - (lease.save_before_seconds || 0));
    if (now > 0) {
      // Unsaved edits would be lost when the server stops: save them shortly before.
      timers.push(setTimeout(function () {
        app.commands.execute("docmanager:save-all").catch(function (error) {
          console.warn(NAME + ": saving before the lease ends failed", error);
        });
      }, saveAt * 1000));
    }
  }

  var plugin = {
    id: NAME + ":plugin",
    description: "Warns the student before the GPU lease ends (also when it ends early) and saves open documents.",
    autoStart: true,
    activate: function (app) {
      var settings = app.serviceManager.serverSettings;
      var url = settings.baseUrl.replace(/\/?$/, "/") + "gpu-commons/lease";
      var headers = settings.token ? { Authorization: "token " + settings.token } : {};
      var scheduledEnd = null;
      function follow() {
        return window
          .fetch(url, { cache: "no-store", credentials: "same-origin", headers: headers })
          .then(function (response) {
            if (!response.ok) {
              throw new Error(url + " answered " + response.status);
            }
            return response.json();
          })
          .then(function (lease) {
            if (lease.messages) {
              sentences = lease.messages;
              language = lease.locale || language;
            }
            // A new end (renewed, reclaimed) or a new reason (a renewal refused): warn again.
            var seen = lease.expires_at + "|" + (lease.reason || "");
            if (seen !== scheduledEnd) {
              scheduledEnd = seen;
              schedule(app, lease);
            }
            return lease;
          });
      }
      follow()
        .then(function (lease) {
          // The end can move (a reclaim, a renewal): look again as often as the server learns it.
          var every = Math.max(5, lease.refresh_seconds || 30) * 1000;
          setInterval(function () {
            follow().catch(function (error) {
              console.warn(NAME + ": cannot read the lease now", error);
            });
          }, every);
        })
        .catch(function (error) {
          console.error(NAME + ": cannot read the lease; no warnings before it ends", error);
        });
    },
  };

  var container = {
    get: function (module) {
      if (module !== "./extension") {
        return Promise.reject(new Error('Module "' + module + '" does not exist in container.'));
      }
      return Promise.resolve(function () {
        return { __esModule: true, default: plugin };
      });
    },
    init: function () {
      return Promise.resolve();
    },
  };

  window._JUPYTERLAB = window._JUPYTERLAB || {};
  window._JUPYTERLAB[NAME] = container;
})();
