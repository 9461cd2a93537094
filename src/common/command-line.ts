/**
 * Command lines run without a shell (the registrar's --policy-exec): parsed here once, so that the
 * config check refuses a malformed one at start and the runner executes exactly what it checked.
 */

/**
 * Splits a command line into program and arguments, without a shell: white space separates words,
 * '…' quotes literally, "…" quotes with \" and \\ escapes, a backslash outside quotes escapes the next
 * character. Nothing is expanded ($VAR, *, ~ stay as they are).
 */
export function splitCommand(command: string): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  for (let i = 0; i < command.length; i++) {
    const c = command[i]!;
    if (c === "'") {
      const end = command.indexOf("'", i + 1);
      if (end < 0) throw new Error('an opening single quote has no closing one');
      cur += command.slice(i + 1, end);
      inWord = true;
      i = end;
    } else if (c === '"') {
      inWord = true;
      for (i++; ; i++) {
        if (i >= command.length) throw new Error('an opening double quote has no closing one');
        const d = command[i]!;
        if (d === '"') break;
        if (d === '\\' && (command[i + 1] === '"' || command[i + 1] === '\\')) cur += command[++i];
        else cur += d;
      }
    } else if (c === '\\') {
      if (i + 1 >= command.length) throw new Error('ends with a lone backslash');
      cur += command[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) words.push(cur);
  if (words.length === 0) throw new Error('names no program');
  return words;
}
