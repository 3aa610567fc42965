import math
print(math.tau)
