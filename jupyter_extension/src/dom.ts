/** The one way the extension makes elements: text goes in as textContent, never as HTML. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  cls?: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) {
    e.className = cls;
  }
  if (text !== undefined) {
    e.textContent = text;
  }
  return e;
}

/** A toolbar or inline button; `action` names it for the browser tests (data-action). */
export function button(label: string, action: string, onClick: () => void, title?: string): HTMLButtonElement {
  const b = el('button', 'jp-Button jp-mod-styled nb2pipe-button', label);
  b.type = 'button';
  b.dataset.action = action;
  if (title) {
    b.title = title;
  }
  b.addEventListener('click', ev => {
    ev.stopPropagation();
    onClick();
  });
  return b;
}

export function section(title: string, cls: string): { root: HTMLElement; body: HTMLElement } {
  const root = el('section', `nb2pipe-section ${cls}`);
  root.appendChild(el('h3', 'nb2pipe-section-title', title));
  const body = el('div', 'nb2pipe-section-body');
  root.appendChild(body);
  return { root, body };
}

export function fmtTime(t: number | null | undefined): string {
  if (!t) {
    return '';
  }
  const d = new Date(t * 1000);
  return d.toLocaleString();
}

export function short(v: any, max = 60): string {
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return s.length > max ? s.slice(0, max - 1) + '…' : s;
}
