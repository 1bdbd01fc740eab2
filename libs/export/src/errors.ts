/**
 * Export errors. The first three are found before any byte is written (the CLI exits 1, the API
 * answers 404, 409 or 400); {@link LayerVariantMismatchError} is found while a layer is written and
 * aborts the archive.
 */

/** A reference or digest that names nothing in the store. */
export class UnknownReferenceError extends Error {
  override readonly name = 'UnknownReferenceError';
  readonly reference: string;

  constructor(reference: string, message = `no image "${reference}" in the store`) {
    super(message);
    this.reference = reference;
  }
}

/**
 * The reference is in the store but its image is not all there yet (a pull still committing, a
 * layer record or blob missing): nothing to export until it is.
 */
export class IncompleteImageError extends Error {
  override readonly name = 'IncompleteImageError';
}

/** The request itself cannot be served (bad reference, `original` from a `drop` store, …). */
export class ExportRequestError extends Error {
  override readonly name = 'ExportRequestError';
}

/**
 * A recompressed layer did not come out as its variant record says (digest or size): the codec is
 * not deterministic after all, or the record is wrong. Names the layer and both values.
 */
export class LayerVariantMismatchError extends Error {
  override readonly name = 'LayerVariantMismatchError';
}
