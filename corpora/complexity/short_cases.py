# ruff: noqa: E501  (data: one prompt per line)
"""A third pass of standalone prompts, `LABEL|TAGS|TEXT` as in standalone.py, added to the TRAINING split only.

Written after the first classifier misrouted short, hard prompts (a proof or an algorithm in under a dozen words)
to the cheap tier: word features had seen too few of them, and too few of their easy look-alikes ("prove you're
not a robot", "derive" in a trivial ask), to tell the two apart. These are new prompts of those kinds, written for
this repository (not copied or paraphrased from the held-out split or any public dataset) and labelled by the same
criterion as the rest (README.md). build.py puts every group from this file in the training
split, and builds them after the original records so that the held-out split stays byte-identical.
"""

from __future__ import annotations

SHORT = {
    "maths": r"""
C|short_hard|Prove that every integer greater than 1 has a prime factorisation.
C|short_hard|Show that the product of any three consecutive integers is divisible by 6.
C|short_hard|Prove that log2(3) is irrational.
C|short_hard|Prove the AM-GM inequality for two positive numbers.
C|short_hard|Show that there are infinitely many primes of the form 4k + 3.
C|short_hard|Prove that a tree with n vertices has n - 1 edges.
C|short_hard|Prove that the harmonic series diverges.
C|short_hard|Show that e is irrational.
C|short_hard|Prove Cauchy-Schwarz for vectors in R^n.
C|short_hard|Derive the quadratic formula by completing the square.
C|short_hard|Derive the variance of a binomial distribution.
C|short_hard|Derive Euler's formula e^(ix) = cos x + i sin x from power series.
C|short_hard|Prove that the set of real numbers is uncountable.
C|short_hard|Show that n^5 - n is divisible by 30 for every integer n.
C|short_hard|Prove that every planar graph is 6-colourable.
C|short_hard|How many spanning trees does the complete graph K5 have? Justify.
C|short_hard|Compute the sum of 1/n^2 and explain where the answer comes from.
C|short_hard|Find the expected number of rolls of a die until every face has appeared.
C|short_hard|What's the expected length of the longest run of heads in 100 flips, roughly, and why?
C|short_hard|Prove that sqrt(3) + sqrt(5) is irrational.
C|short_hard|Solve y'' + 4y = sin(2x).
C|short_hard|Evaluate the integral of ln(x) from 0 to 1.
C|short_hard|Integrate 1 / (x^2 + 2x + 5) dx.
C|short_hard|Is the series sum of sin(n)/n convergent? Prove it.
C|short_hard|Prove the pigeonhole principle implies two people in London share a hair count.
C|short_hard|Show that a group of prime order is cyclic.
C|short_hard|Prove that the diagonals of a parallelogram bisect each other using vectors.
C|short_hard|How many necklaces of 6 beads in 2 colours are there up to rotation?
C|short_hard|Find the number of derangements of 7 items and explain the formula.
C|short_hard|Prove that 0.999... equals 1 rigorously.
C|short_hard|Gambler's ruin: probability of reaching $100 from $20 with a fair coin? Derive it.
C|short_hard|Why is the determinant of a product the product of the determinants?
C|short_hard|Prove that the composition of two injective functions is injective, and give a counterexample for the converse.
C|short_hard|What is the closed form of the nth Fibonacci number? Derive it.
C|short_hard|Find the maximum of xy subject to x^2 + y^2 = 1 with Lagrange multipliers.
C|short_hard|Show that the medians of a triangle meet at one point.
C|short_hard|Prove there is no rational number whose square is 6.
C|short_hard|Estimate pi with a Monte Carlo method and bound its error.
C|short_hard|Monty Hall with four doors: should you switch? Explain.
C|short_hard|Prove Fermat's little theorem.
S|trigger_word|Prove you're not a robot: what is 3 + 4?
S|trigger_word|Derive 20% of 150 for me.
S|trigger_word|Show that 6 is an even number.
S|trigger_word|Prove that 10 is bigger than 7.
S|trigger_word|Find the derivative of 5x.
S|trigger_word|Integrate 2 dx.
S|trigger_word|Is 2 a prime number?
S|trigger_word|Solve for x: 2x = 14.
S|trigger_word|What's the square root of 81? Show your work.
S|trigger_word|Prove it: is 9 divisible by 3?
S|trigger_word|Step by step, add 45 and 37.
S|trigger_word|What is the probability of rolling a 6 on one die?
S||What is 3 cubed?
S||How many sides does a hexagon have?
S||What is 0.75 as a fraction?
S||How many hours are in a week?
S||What's 18 minus 9?
S||Convert 3 hours to minutes.
S||What's half of 250?
S||Is 21 odd or even?
S||What is the perimeter of a square with side 5 cm?
S||What's 100 divided by 4?
S||What number comes after 999?
S||List the first five prime numbers.
S||What is pi to three decimal places?
S||What is 10 factorial written as a symbol?
S||Convert 2 litres to millilitres.
S||What's 30% of 200?
""",
    "code_generation": r"""
C|short_hard|Implement a lock-free stack in C++ and explain the ABA problem.
C|short_hard|Write an LRU cache with O(1) get and put.
C|short_hard|Implement Dijkstra's algorithm with a binary heap and prove it is correct.
C|short_hard|Write a red-black tree delete in Rust.
C|short_hard|Implement a consistent hashing ring with virtual nodes.
C|short_hard|Write a rate limiter that works across several processes.
C|short_hard|Implement a trie-based autocomplete that ranks by frequency.
C|short_hard|Write a parser for arithmetic expressions with operator precedence.
C|short_hard|Implement the KMP string search and explain the failure function.
C|short_hard|Write a Raft log replication step in Go.
C|short_hard|Implement a skip list with insert, delete and search.
C|short_hard|Find the longest palindromic substring in O(n).
C|short_hard|Write an async connection pool in Python with timeouts and health checks.
C|short_hard|Implement a min-cost max-flow algorithm.
C|short_hard|Write a garbage collector for a toy language.
C|short_hard|Detect a deadlock between threads at runtime in Java.
C|short_hard|Implement a persistent vector with structural sharing.
C|short_hard|Make quicksort worst-case O(n log n).
S||Write a Python function that counts the vowels in a word.
S||How do I print hello world in Java?
S||Write a for loop that prints 1 to 10 in JavaScript.
S||How do I sort a list in Python?
S||Write a function that returns the maximum of two numbers.
S||How do I read a file line by line in Python?
S||Convert a string to uppercase in C#.
S||Write a Python function that checks if a number is even.
S||How do I get the length of an array in JavaScript?
S||How do I make a dictionary in Python?
S|trigger_word|Implement a function that adds two numbers.
S|trigger_word|Write an algorithm that prints the numbers in a list.
S|trigger_word|Prove this works: print(1 + 1)
""",
    "analysis": r"""
C|short_hard|Why does quicksort beat merge sort in practice?
C|short_hard|Why can't a distributed system have consistency, availability and partition tolerance at once?
C|short_hard|When does caching make latency worse?
C|short_hard|Why do longer queues not always mean more throughput?
C|short_hard|Is a 99.99% SLO worth it for an internal tool?
C|short_hard|Why does Little's law hold for any queue?
C|short_hard|What goes wrong with two-phase commit when the coordinator crashes?
C|short_hard|Why can A/B tests stopped early show fake wins?
C|short_hard|Should we build or buy our feature-flag system?
C|short_hard|Why is exactly-once delivery impossible in general?
C|short_hard|Why does regression to the mean fool managers?
C|short_hard|Analyse the halting problem's proof by diagonalisation.
S|trigger_word|Analyse this: is Monday before Tuesday?
S|trigger_word|Compare 5 and 8, which is larger?
S|trigger_word|Explain step by step how to open a new browser tab.
S||Which is bigger, a kilobyte or a megabyte?
S||What does USB stand for?
S||Is Python a programming language?
""",
    "general_knowledge": r"""
C|short_hard|Why did the Ottoman Empire decline?
C|short_hard|Why do prime numbers matter for encryption?
C|short_hard|How does general relativity explain GPS clock drift?
C|short_hard|Why is the halting problem undecidable?
C|short_hard|What caused the 2008 financial crisis?
C|short_hard|Why do antibiotics stop working over time?
C|short_hard|Is mathematics discovered or invented?
C|short_hard|Why did the printing press change European politics?
C|short_hard|How do black holes evaporate?
C|short_hard|Why is protein folding hard to predict?
S||What is the capital of Portugal?
S||Who wrote Pride and Prejudice?
S||What is the boiling point of water in Fahrenheit?
S||How many oceans are there?
S||What colour do you get mixing red and white?
S||What is a prime number?
S||What year did World War II end?
S||Who painted The Starry Night?
S||What is the largest planet in our solar system?
S||What does DNA stand for?
S|trigger_word|Why is the sky blue? One sentence please.
S|trigger_word|Explain in one line what a theorem is.
""",
    "chitchat": r"""
S|trigger_word|Can you prove you're smarter than my cat? lol
S|trigger_word|Derive a fun nickname for my dog Max.
S||Tell me a joke about maths.
S||Good morning! How's it going?
S||What's a fun fact about prime numbers?
S||Say something nice about Mondays.
""",
    "sql": r"""
C|short_hard|SQL: find gaps in a sequence of invoice numbers.
C|short_hard|Compute 7-day rolling retention by signup cohort in SQL.
C|short_hard|Why does this query use a sequential scan despite an index on the column?
C|short_hard|Find the top 3 products per category by revenue, handling ties, in one query.
S||Select all rows from the customers table.
S||How do I count rows in a SQL table?
S||Write a query that returns users older than 30.
S||How do I sort query results by date descending?
""",
}
