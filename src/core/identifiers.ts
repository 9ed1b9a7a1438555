// Quoting for generated SQL. Every identifier we generate is quoted, whatever it looks like;
// literals are only ever built from our own names, never from row values (those go as parameters).

export function quoteIdent(name: string): string {
  if (name.includes('\u0000')) throw new TypeError('an identifier cannot contain a NUL character');
  return `"${name.replace(/"/g, '""')}"`;
}

export function qualify(schema: string, table: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(table)}`;
}

export function quoteLiteral(value: string): string {
  if (value.includes('\u0000')) throw new TypeError('a literal cannot contain a NUL character');
  return `'${value.replace(/'/g, "''")}'`;
}

/** `schema.table` for messages, quoted only where a reader would misread it. */
export function displayName(schema: string, table: string): string {
  const part = (s: string) => (/^[a-z_][a-z0-9_]*$/.test(s) ? s : quoteIdent(s));
  return `${part(schema)}.${part(table)}`;
}
