// History charts: the data is in a JSON block of the page (no inline script, CSP allows only 'self').
(function () {
  "use strict";
  var block = document.getElementById("history-data");
  if (!block || typeof window.Chart === "undefined") { return; }
  var data = JSON.parse(block.textContent);
  function draw(id, label, values, color) {
    var canvas = document.getElementById(id);
    if (!canvas) { return; }
    new window.Chart(canvas, {
      type: "bar",
      data: { labels: data.labels, datasets: [{ label: label, data: values, backgroundColor: color }] },
      options: { animation: false, responsive: true, plugins: { legend: { display: false } },
                 scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }
    });
  }
  draw("chart-syncs", "Syncs", data.syncs, "#0b4f9c");
  draw("chart-changes", "Changes applied", data.changes, "#15803d");
  draw("chart-failures", "Failures", data.failures, "#b91c1c");
  var latency = document.getElementById("chart-latency");
  if (latency && data.latency_p50) {
    new window.Chart(latency, {
      type: "line",
      data: { labels: data.labels, datasets: [
        { label: "p50 (s)", data: data.latency_p50, borderColor: "#0b4f9c", backgroundColor: "#0b4f9c", spanGaps: false },
        { label: "p95 (s)", data: data.latency_p95, borderColor: "#b45309", backgroundColor: "#b45309", spanGaps: false }
      ] },
      options: { animation: false, responsive: true, scales: { y: { beginAtZero: true } } }
    });
  }
})();
