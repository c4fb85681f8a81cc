(function () {
  function value(row, key, numeric) {
    var cell = row.querySelector('[data-key="' + key + '"]');
    var text = cell ? cell.getAttribute("data-value") : "";
    if (!numeric) { return text; }
    return text === "" ? NaN : Number(text);
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var body = table.tBodies[0];
    var buttons = table.querySelectorAll("thead button[data-key]");
    buttons.forEach(function (button) {
      button.addEventListener("click", function () {
        var key = button.getAttribute("data-key");
        var numeric = button.getAttribute("data-type") === "number";
        var ascending = button.getAttribute("data-order") !== "ascending";
        buttons.forEach(function (other) { other.removeAttribute("data-order"); });
        button.setAttribute("data-order", ascending ? "ascending" : "descending");
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = value(a, key, numeric), y = value(b, key, numeric);
          if (numeric) {
            if (isNaN(x) || isNaN(y)) { return isNaN(x) - isNaN(y); }
            return ascending ? x - y : y - x;
          }
          return ascending ? x.localeCompare(y) : y.localeCompare(x);
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
})();
