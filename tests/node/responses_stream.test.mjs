// Keyward with the official OpenAI Node SDK: `client.responses.stream()`
// through the gateway, its text deltas and `finalResponse()`.
//
// This file starts nothing: it reads KEYWARD_URL (the gateway's base,
// e.g. http://127.0.0.1:PORT/v1), KEYWARD_KEY (a project key) and
// KEYWARD_MODEL (a model Keyward serves), and optionally KEYWARD_INPUT and
// KEYWARD_EXPECT (the exact text the answer must be).
// tests/python/test_responses_sdk.py starts Keyward and runs it; by hand:
//   KEYWARD_URL=… KEYWARD_KEY=… KEYWARD_MODEL=… tests/node/run.sh
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const url = process.env.KEYWARD_URL;
const key = process.env.KEYWARD_KEY;
const model = process.env.KEYWARD_MODEL;
const input = process.env.KEYWARD_INPUT || 'hello from node';
const expected = process.env.KEYWARD_EXPECT;

test('responses.stream() through Keyward: deltas, then a completed final response with usage', async () => {
  assert.ok(url && key && model, 'KEYWARD_URL, KEYWARD_KEY and KEYWARD_MODEL must be set');
  const client = new OpenAI({ baseURL: url, apiKey: key, maxRetries: 0, timeout: 60_000 });

  const stream = client.responses.stream({ model, input, max_output_tokens: 32 });
  const deltas = [];
  const types = [];
  stream.on('response.output_text.delta', (event) => deltas.push(event.delta));
  for await (const event of stream) {
    types.push(event.type);
  }
  const final = await stream.finalResponse();

  assert.equal(types[0], 'response.created');
  assert.equal(types.at(-1), 'response.completed');
  assert.ok(deltas.length > 0, `no text deltas arrived (events: ${types.join(', ')})`);
  assert.equal(final.status, 'completed');
  assert.ok(final.id.startsWith('resp_'), final.id);
  assert.ok(final.output_text.length > 0, 'empty output_text');
  assert.equal(final.output_text, deltas.join(''));
  if (expected !== undefined) assert.equal(final.output_text, expected);
  assert.ok(final.usage, 'no usage on the final response');
  assert.ok(final.usage.input_tokens > 0 && final.usage.output_tokens > 0, JSON.stringify(final.usage));
  assert.equal(final.usage.total_tokens, final.usage.input_tokens + final.usage.output_tokens);
});
