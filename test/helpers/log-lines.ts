// Reading log output as a collector would: which lines are pino JSON lines, and which keys one of
// them holds twice. JSON.parse keeps the last of two equal keys silently, so duplicates are found
// by scanning the text itself, object by object (nested objects have their own keys).

/** The keys that appear more than once in the same object of one JSON text, as path.key. */
export function duplicateKeys(json: string): string[] {
  const dups: string[] = [];
  const stack: { object: boolean; keys: Set<string>; path: string; expectKey: boolean; lastKey: string }[] = [];
  let i = 0;
  const readString = (): string => {
    const start = i;
    i++; // opening quote
    while (i < json.length && json[i] !== '"') i += json[i] === '\\' ? 2 : 1;
    i++; // closing quote
    return JSON.parse(json.slice(start, i)) as string;
  };
  while (i < json.length) {
    const c = json[i];
    const top = stack[stack.length - 1];
    if (c === '"') {
      const s = readString();
      if (top && top.expectKey) {
        if (top.keys.has(s)) dups.push(top.path ? `${top.path}.${s}` : s);
        top.keys.add(s);
        top.lastKey = s;
        top.expectKey = false;
      }
      continue;
    }
    const inside = !top ? '' : top.object ? (top.path ? `${top.path}.${top.lastKey}` : top.lastKey) : `${top.path}[]`;
    if (c === '{') stack.push({ object: true, keys: new Set(), path: inside, expectKey: true, lastKey: '' });
    else if (c === '[') stack.push({ object: false, keys: new Set(), path: inside, expectKey: false, lastKey: '' });
    else if (c === '}' || c === ']') stack.pop();
    else if (c === ',' && top?.object) top.expectKey = true; // in an object, a comma comes before the next key
    i++;
  }
  return dups;
}

/** A line a pino logger wrote: a JSON object with a numeric level, a time and a message. */
export function isLogLine(line: string): boolean {
  if (!line.startsWith('{')) return false;
  try {
    const o = JSON.parse(line) as Record<string, unknown>;
    return typeof o.level === 'number' && 'time' in o && 'msg' in o;
  } catch {
    return false;
  }
}
