// Send one request to llm-fleet and print its streamed reply, with the Apache Kafka Java client
// (org.apache.kafka:kafka-clients 3.x or 4.x). Not run by the suite (no JVM build here); the same steps as
// python_confluent.py, which is. Exit status: 0 done, 2 error event, 1 timeout.
//
//   java -cp kafka-clients.jar:jackson-databind.jar:. Request localhost:9092 "Say hello"
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.*;

public class Request {
  public static void main(String[] args) throws Exception {
    String bootstrap = args.length > 0 ? args[0] : "localhost:9092";
    String prompt = args.length > 1 ? args[1] : "Say hello in five words.";
    String replyTo = "llm.replies.example-java"; // your service's reply topic (it must exist)
    ObjectMapper json = new ObjectMapper();
    String id = "req-" + UUID.randomUUID().toString().substring(0, 12);

    // 1. Read the reply topic with assign() from its end as it is now, before sending.
    Properties c = new Properties();
    c.put("bootstrap.servers", bootstrap);
    c.put("enable.auto.commit", "false");
    c.put("fetch.max.wait.ms", "100"); // the embedded dev broker does not wake a long-poll early
    KafkaConsumer<String, byte[]> consumer =
        new KafkaConsumer<>(c, new StringDeserializer(), new ByteArrayDeserializer());
    List<TopicPartition> parts = new ArrayList<>();
    consumer.partitionsFor(replyTo).forEach(p -> parts.add(new TopicPartition(replyTo, p.partition())));
    consumer.assign(parts);
    consumer.endOffsets(parts).forEach(consumer::seek);

    // 2. Produce the request (any codec: the fleet reads none, gzip, snappy, lz4 and zstd).
    Properties p = new Properties();
    p.put("bootstrap.servers", bootstrap);
    p.put("compression.type", "zstd");
    p.put("linger.ms", "0");
    Map<String, Object> request = new LinkedHashMap<>();
    request.put("id", id);
    request.put("reply_to", replyTo);
    request.put("prompt", prompt);
    request.put("model", "auto");
    request.put("max_tokens", 32);
    try (KafkaProducer<String, byte[]> producer =
        new KafkaProducer<>(p, new StringSerializer(), new ByteArraySerializer())) {
      ProducerRecord<String, byte[]> rec =
          new ProducerRecord<>("llm.requests", id, json.writeValueAsBytes(request));
      rec.headers().add("content-type", "application/json".getBytes(StandardCharsets.UTF_8));
      producer.send(rec).get();
    }

    // 3. Stream the events of this id: chunks, then one terminal event (done or a typed error).
    long deadline = System.currentTimeMillis() + 60_000;
    while (System.currentTimeMillis() < deadline) {
      for (ConsumerRecord<String, byte[]> r : consumer.poll(Duration.ofMillis(200))) {
        JsonNode ev = json.readTree(r.value());
        if (!id.equals(ev.path("id").asText())) continue; // another request's reply
        System.out.println(ev);
        if ("done".equals(ev.get("type").asText())) System.exit(0);
        if ("error".equals(ev.get("type").asText())) System.exit(2); // code, message, retriable
      }
    }
    System.exit(1);
  }
}
