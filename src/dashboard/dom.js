// Updates the page in place: the DOM already shown is patched to look like a freshly rendered tree,
// node by node, so focus, text selection, scroll position and open <details> survive an update.

/** The identity of an element among its siblings: its tag and its data key, when it has one. */
function keyOf(node) {
  if (node.nodeType !== Node.ELEMENT_NODE) return `#${node.nodeType}`;
  const d = node.dataset;
  const key = d.key ?? d.device ?? d.revision ?? d.deployment ?? d.wave ?? d.region ?? d.event ?? node.id;
  return key === undefined || key === '' ? node.tagName : `${node.tagName}:${key}`;
}

function syncAttributes(from, to) {
  for (const { name } of [...from.attributes]) {
    if (!to.hasAttribute(name)) from.removeAttribute(name);
  }
  for (const { name, value } of [...to.attributes]) {
    if (name === 'style') {
      // Through the CSSOM: the page's CSP refuses style attributes set as markup.
      if (from.style.cssText !== to.style.cssText) from.style.cssText = to.style.cssText;
    } else if (from.getAttribute(name) !== value) {
      from.setAttribute(name, value);
    }
  }
}

/** Makes `from` look like `to` (same tag), reusing `from`'s nodes wherever their keys match. */
export function morph(from, to) {
  syncAttributes(from, to);
  morphChildren(from, to);
}

/** Makes the children of `parent` look like those of `source` (a tree not in the document). */
export function morphChildren(parent, source) {
  const wanted = [...source.childNodes];
  const pool = new Map();
  for (const child of [...parent.childNodes]) {
    const key = keyOf(child);
    if (!pool.has(key)) pool.set(key, []);
    pool.get(key).push(child);
  }
  // Match first, then drop what nobody claimed: kept nodes that stay in order are never moved
  // (moving a node would drop its focus and selection).
  const placed = wanted.map((next) => {
    const candidates = pool.get(keyOf(next));
    const old = candidates && candidates.length > 0 ? candidates.shift() : null;
    if (!old) return next;
    if (old.nodeType === Node.ELEMENT_NODE) morph(old, next);
    else if (old.data !== next.data) old.data = next.data;
    return old;
  });
  for (const left of pool.values()) for (const node of left) parent.removeChild(node);
  let cursor = parent.firstChild;
  for (const node of placed) {
    if (node === cursor) cursor = cursor.nextSibling;
    else parent.insertBefore(node, cursor);
  }
}
