// Lists the newest items; enough to give the static path realistic traffic.
fetch("/items?limit=20")
  .then((r) => r.json())
  .then((doc) => {
    const list = document.getElementById("items");
    for (const item of doc.items) {
      const li = document.createElement("li");
      li.textContent = `${item.name} (${(item.price_cents / 100).toFixed(2)})`;
      list.appendChild(li);
    }
  });
