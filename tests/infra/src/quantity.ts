/**
 * Kubernetes resource quantities (`500m`, `2`, `512Mi`, `1G`) as numbers: cores for CPU, bytes
 * for memory and storage. Only the suffixes the API accepts; anything else throws.
 */

const BINARY: Readonly<Record<string, number>> = {
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};
const DECIMAL: Readonly<Record<string, number>> = {
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
};

/** The value of a quantity in base units (cores, bytes). */
export function parseQuantity(quantity: string | number): number {
  if (typeof quantity === 'number') return quantity;
  const match = /^([+-]?(?:\d+(?:\.\d*)?|\.\d+))([a-zA-Z]*)$/.exec(quantity.trim());
  const suffix = match?.[2] ?? '';
  const factor = BINARY[suffix] ?? DECIMAL[suffix];
  if (match === null || factor === undefined) throw new Error(`not a Kubernetes quantity: "${quantity}"`);
  return Number(match[1]) * factor;
}

export const MiB = 2 ** 20;
