#!/usr/bin/env node
// Send one request to llm-fleet and print its streamed reply, with kafkajs.
//
//   npm install            (kafkajs; kafkajs-snappy and kafkajs-lz4 for those codecs; gzip is built in)
//   node request.js --bootstrap localhost:9092 --prompt "Say hello" [--compression lz4]
//
// The reply topic is read by a consumer group (kafkajs has no assign()). Join first, then send: the group
// starts at the topic's end, so the reply must come after the join. On the embedded dev broker keep
// sessionTimeout short: it answers a group join after half of it. Exit status: 0 done, 2 error event, 1 timeout.
'use strict'
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'
const crypto = require('crypto')
const { Kafka, logLevel, CompressionTypes, CompressionCodecs } = require('kafkajs')
CompressionCodecs[CompressionTypes.Snappy] = require('kafkajs-snappy')
const LZ4 = require('kafkajs-lz4')
CompressionCodecs[CompressionTypes.LZ4] = new LZ4().codec

function parseArgs (argv) {
  const args = {
    bootstrap: 'localhost:9092',
    'requests-topic': 'llm.requests',
    'reply-to': 'llm.replies.example-node',
    model: 'auto',
    prompt: 'Say hello in five words.',
    'max-tokens': '32',
    compression: 'none',
    'api-key': '',
    'timeout-s': '60'
  }
  for (let i = 0; i < argv.length; i += 2) args[argv[i].replace(/^--/, '')] = argv[i + 1]
  return args
}

const CODECS = { none: CompressionTypes.None, gzip: CompressionTypes.GZIP, snappy: CompressionTypes.Snappy, lz4: CompressionTypes.LZ4 }

async function main () {
  const args = parseArgs(process.argv.slice(2))
  const kafka = new Kafka({ clientId: 'llm-fleet-example', brokers: args.bootstrap.split(','), logLevel: logLevel.ERROR })
  const admin = kafka.admin()
  await admin.connect()
  await admin.createTopics({ topics: [{ topic: args['reply-to'], numPartitions: 4 }] }) // false if it exists: fine
  await admin.disconnect()

  const id = `req-${crypto.randomBytes(6).toString('hex')}`
  const consumer = kafka.consumer({
    groupId: `example-${crypto.randomBytes(4).toString('hex')}`,
    sessionTimeout: 2000, // the embedded dev broker holds a join for half of this
    heartbeatInterval: 500,
    maxWaitTimeInMs: 100 // its fetch long-poll does not wake early when a record arrives
  })
  let joined
  const joinedP = new Promise((resolve) => { joined = resolve })
  consumer.on(consumer.events.GROUP_JOIN, () => joined())
  await consumer.connect()
  await consumer.subscribe({ topics: [args['reply-to']], fromBeginning: false })

  let finish
  const finished = new Promise((resolve) => { finish = resolve })
  const timer = setTimeout(() => finish(1), Number(args['timeout-s']) * 1000)
  await consumer.run({
    eachMessage: async ({ message }) => {
      const event = JSON.parse(message.value.toString())
      if (event.id !== id) return // another request's reply
      console.log(JSON.stringify(event))
      if (event.type === 'done') finish(0)
      if (event.type === 'error') finish(2) // typed: code, message, retriable
    }
  })
  await joinedP

  const headers = { 'content-type': 'application/json' }
  if (args['api-key']) headers['fleet-api-key'] = args['api-key']
  const request = {
    id,
    reply_to: args['reply-to'],
    prompt: args.prompt,
    model: args.model,
    max_tokens: Number(args['max-tokens']),
    timeout_ms: Number(args['timeout-s']) * 1000
  }
  const producer = kafka.producer()
  await producer.connect()
  await producer.send({
    topic: args['requests-topic'],
    compression: CODECS[args.compression],
    messages: [{ key: id, value: JSON.stringify(request), headers }]
  })
  await producer.disconnect()

  const code = await finished
  clearTimeout(timer)
  await consumer.disconnect()
  process.exit(code)
}

main().catch((e) => { console.error(e); process.exit(1) })
